// Command bench measures berth side by side with its floors in one run:
// berth as a child process (built from ./cmd/berth unless -berth names a
// binary), a bare net/http server answering the same bytes as berth's
// GetWorkspace, and bare go-sse, coder/websocket and HTTP/2 servers (this
// program re-executed) for idle streams. This program is also the claude
// agent of berth's tasks (agent.go). It prints a table (figure, berth,
// floor, ratio, target from issue #18, met or not) and writes the figures,
// with a description of the machine, as JSON, and optionally into a
// README. All traffic is on 127.0.0.1; every child process and the
// temporary directory go on every path, Ctrl-C included.
//
// It lives in tools/ as a package main of the module, not under cmd/,
// because it is a developer's tool (`just bench`) and not something berth
// ships. It imports no internal package: it sees berth as a client does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == floorFlag {
		if err := serveFloor(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench: floor:", err)
			os.Exit(1)
		}
		return
	}
	if prompt, ok := agentPrompt(os.Args[1:]); ok {
		if err := runAgent(prompt); err != nil {
			fmt.Fprintln(os.Stderr, "bench agent:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, measures, and prints; it returns the exit code. Its
// deferred clean-ups run before the process exits, on Ctrl-C too.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := raiseNOFILE(); err != nil {
		fmt.Fprintln(stderr, "bench: raising the open-file limit:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := newReport(cfg, args)
	if err := measure(ctx, cfg, rep, stderr); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	rep.printTable(stdout)
	if err := rep.write(cfg.out); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nJSON written to %s\n", cfg.out)
	if cfg.readme != "" {
		if err := rewriteReadme(cfg.readme, rep.markdown()); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s rewritten between its bench markers\n", cfg.readme)
	}
	return 0
}

// raiseNOFILE raises this process's soft limit on open files to the hard
// limit. Children inherit it: berth, the floors and go test.
func raiseNOFILE() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return nil
}
