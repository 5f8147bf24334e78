// Command bench measures berth side by side with its floors in one run:
// berth as a child process (built from ./cmd/berth unless -berth names a
// binary), a bare net/http server answering the same bytes as berth's
// GetWorkspace, and a bare go-sse server (this program re-executed) for
// idle streams. It prints a table (figure, berth, floor, ratio, target
// from issue #18) and writes the figures, with a description of the
// machine, as JSON. All traffic is on 127.0.0.1; every child process and
// the temporary directory go on every path, Ctrl-C included.
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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxScheduled bounds the requests of one open-loop run, whose intended
// send times and latencies are held in memory.
const maxScheduled = 3_000_000

// config is the harness's flags.
type config struct {
	berth        string
	out          string
	conns        int
	duration     time.Duration
	rates        []float64
	rateDuration time.Duration
	openWorkers  int
	streams      int
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == floorFlag {
		if err := serveSSEFloor(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: SSE floor:", err)
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := measure(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	rep.printTable(stdout)
	if err := rep.write(cfg.out); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nJSON written to %s\n", cfg.out)
	return 0
}

// parse reads the flags.
func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var rates string
	fs.StringVar(&cfg.berth, "berth", "", "berth binary to run (default: go build ./cmd/berth into a temporary directory; run from the repository's root)")
	fs.StringVar(&cfg.out, "out", os.TempDir()+"/berth-bench.json", "where to write the JSON report")
	fs.IntVar(&cfg.conns, "conns", 32, "connections of the closed-loop throughput run")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each closed-loop run")
	fs.StringVar(&rates, "rates", "1000,5000", "open-loop rates in requests a second, comma-separated")
	fs.DurationVar(&cfg.rateDuration, "rate-duration", 5*time.Second, "length of each open-loop run")
	fs.IntVar(&cfg.openWorkers, "open-workers", 512, "most requests in flight in an open-loop run (and connections)")
	fs.IntVar(&cfg.streams, "streams", 2000, "idle SSE streams opened to each server (at most 10000)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for r := range strings.SplitSeq(rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 || v > 50000 {
			err = fmt.Errorf("-rates: %q is not a rate in (0, 50000]", r)
			fmt.Fprintln(stderr, err)
			return cfg, err
		}
		cfg.rates = append(cfg.rates, v)
	}
	var bad []string
	if fs.NArg() > 0 {
		bad = append(bad, "no arguments are taken")
	}
	if cfg.conns < 1 || cfg.conns > 1024 {
		bad = append(bad, "-conns must be in 1..1024")
	}
	if cfg.openWorkers < 1 || cfg.openWorkers > 4096 {
		bad = append(bad, "-open-workers must be in 1..4096")
	}
	for _, r := range cfg.rates {
		if r*cfg.rateDuration.Seconds() > maxScheduled {
			bad = append(bad, fmt.Sprintf("-rates × -rate-duration: at most %d requests a run", maxScheduled))
			break
		}
	}
	if cfg.streams < 1 || cfg.streams > 10000 {
		bad = append(bad, "-streams must be in 1..10000")
	}
	if cfg.duration <= 0 || cfg.rateDuration <= 0 || cfg.duration > 10*time.Minute || cfg.rateDuration > 10*time.Minute {
		bad = append(bad, "-duration and -rate-duration must be in (0, 10m]")
	}
	if len(bad) > 0 {
		err := errors.New(strings.Join(bad, "; "))
		fmt.Fprintln(stderr, err)
		return cfg, err
	}
	return cfg, nil
}

// measure runs every figure, berth's and its floor's alternately, and
// returns the report.
func measure(ctx context.Context, cfg config, log io.Writer) (*report, error) {
	tmp, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	b, err := startBerth(ctx, cfg.berth, tmp, log)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	get, header, answer, err := b.setUp(ctx)
	if err != nil {
		return nil, err
	}
	floorCtx, stopFloor := context.WithCancel(ctx)
	defer stopFloor()
	floorURL, err := unaryFloor(floorCtx, header, answer)
	if err != nil {
		return nil, err
	}
	floorGet := call{url: floorURL + "/berth.v1.WorkspaceService/GetWorkspace", body: get.body}

	rep := newReport(cfg)
	fmt.Fprintf(log, "bench: GetWorkspace closed loop, %d connections × %s, berth then floor\n", cfg.conns, cfg.duration)
	rep.Closed.Berth = closedLoop(ctx, get, cfg.conns, cfg.duration)
	rep.Closed.Floor = closedLoop(ctx, floorGet, cfg.conns, cfg.duration)
	for _, rate := range cfg.rates {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "bench: GetWorkspace open loop at %g req/s × %s, berth then floor\n", rate, cfg.rateDuration)
		rep.Open = append(rep.Open, openPair{
			Berth: openLoop(ctx, get, rate, cfg.rateDuration, cfg.openWorkers),
			Floor: openLoop(ctx, floorGet, rate, cfg.rateDuration, cfg.openWorkers),
		})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	fmt.Fprintf(log, "bench: %d idle SSE streams to berth\n", cfg.streams)
	rep.SSE.Berth, err = idleStreams(ctx, b.pid(), cfg.streams, b.url+"/api/v1/workspaces/"+b.workspace+"/events", b.token)
	if err != nil {
		return nil, fmt.Errorf("berth's SSE streams: %w", err)
	}
	floor, sseURL, err := startSSEFloor(ctx)
	if err != nil {
		return nil, err
	}
	defer floor.stop(5 * time.Second)
	fmt.Fprintf(log, "bench: %d idle SSE streams to the go-sse floor\n", cfg.streams)
	rep.SSE.Floor, err = idleStreams(ctx, floor.cmd.Process.Pid, cfg.streams, sseURL+"/", "")
	if err != nil {
		return nil, fmt.Errorf("the floor's SSE streams: %w", err)
	}
	return rep, nil
}
