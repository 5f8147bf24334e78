// Command flagtable writes the table of `berth serve`'s flags (name,
// variable, default, meaning, from config.WriteFlagTable) into a Markdown
// file between the lines <!-- flags:begin --> and <!-- flags:end -->.
// With -check it writes nothing, and fails when the table there differs.
//
//	go run ./internal/config/cmd/flagtable [-check] README.md
//
// It is a command of its own, not a hidden flag of berth serve, so that
// documentation stays out of the shipped binary, and so that `just
// generate` and `just lint` compile only the config package to run it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/berthhq/berth/internal/config"
)

const (
	begin = "<!-- flags:begin -->\n"
	end   = "<!-- flags:end -->"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flagtable:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("flagtable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "change nothing; fail when the file's table differs from the flags")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: flagtable [-check] FILE.md")
	}
	path := filepath.Clean(fs.Arg(0))
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	updated, err := replaceTable(old)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(old, updated) {
		return nil
	}
	if *check {
		return fmt.Errorf("%s: the table between %q and %q differs from the flags of berth serve; run `just flagtable`", path, begin[:len(begin)-1], end)
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, updated, info.Mode().Perm()) // #nosec G703 -- the file named on the command line by the developer who runs this
}

// replaceTable returns doc with the lines between the markers replaced by
// the flag table.
func replaceTable(doc []byte) ([]byte, error) {
	i := bytes.Index(doc, []byte(begin))
	if i < 0 {
		return nil, fmt.Errorf("no line %q", begin[:len(begin)-1])
	}
	i += len(begin)
	j := bytes.Index(doc[i:], []byte(end))
	if j < 0 {
		return nil, fmt.Errorf("no line %q after %q", end, begin[:len(begin)-1])
	}
	var table bytes.Buffer
	if err := config.WriteFlagTable(&table); err != nil {
		return nil, err
	}
	out := append([]byte(nil), doc[:i]...)
	out = append(out, table.Bytes()...)
	return append(out, doc[i+j:]...), nil
}
