//go:build !linux

package cli

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// readPassword reads a line from the terminal f with echo off (see the
// Linux version, which turns echo off before the prompt).
func readPassword(f *os.File, prompt io.Writer) (string, error) {
	fmt.Fprint(prompt, "Password: ")
	b, err := term.ReadPassword(int(f.Fd())) // #nosec G115 -- a file descriptor fits in an int
	fmt.Fprintln(prompt)
	return string(b), err
}
