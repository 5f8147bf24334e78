package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxScheduled bounds the requests of one open-loop run, whose latencies
// are held in memory.
const maxScheduled = 3_000_000

// maxStreams is the most idle streams a run opens to one server. This
// machine's hard RLIMIT_NOFILE is 20,000 (not even root may raise it), and
// each stream takes a descriptor in the server and one in the harness.
const maxStreams = 18_000

// phases are the parts of a run, in the order they run.
var phases = []string{"unary", "streams", "fanout", "ingest"}

// streamKinds are the kinds of idle stream, in the order they are measured.
var streamKinds = []string{kindSSE, kindWS, kindH2}

// config is the harness's flags.
type config struct {
	berth          string
	out            string
	readme         string
	conns          int
	duration       time.Duration
	rates          []int
	rateDuration   time.Duration
	openConns      int
	streams        int
	h2PerConn      int
	fanoutDuration time.Duration
	benchtime      string
	phases         []string
	profile        string
	kinds          []string
}

// parse reads and checks the flags; a bad one is reported on stderr.
func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var rates, only, kinds string
	fs.StringVar(&cfg.berth, "berth", "", "berth binary to run (default: go build ./cmd/berth into a temporary directory; run from the repository's root)")
	fs.StringVar(&cfg.out, "out", os.TempDir()+"/berth-bench.json", "where to write the JSON report")
	fs.StringVar(&cfg.readme, "readme", "", "a Markdown file whose part between the lines <!-- bench:begin --> and <!-- bench:end --> is replaced by this run's table")
	fs.IntVar(&cfg.conns, "conns", 32, "connections of the closed-loop throughput run")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each closed-loop run")
	fs.StringVar(&rates, "rates", "1000,5000", "open-loop rates in requests a second (whole numbers), comma-separated")
	fs.DurationVar(&cfg.rateDuration, "rate-duration", 5*time.Second, "length of each open-loop run")
	fs.IntVar(&cfg.openConns, "open-conns", 256, "most connections of an open-loop run (requests beyond wait for one, and the wait counts in their latency)")
	fs.IntVar(&cfg.streams, "streams", 10000, fmt.Sprintf("idle streams opened to each server, per kind (at most %d: the hard open-file limit here is 20,000)", maxStreams))
	fs.IntVar(&cfg.h2PerConn, "h2-per-conn", 1, "idle Connect streams sharing one HTTP/2 connection (1..100; 1, the worst case, is what the issue's per-stream figure means)")
	fs.DurationVar(&cfg.fanoutDuration, "fanout-duration", 5*time.Second, "how long each fan-out run's agents write lines (at most 1m)")
	fs.StringVar(&cfg.benchtime, "benchtime", "2s", "-benchtime of go test's BenchmarkIngest (a duration, or a count such as 200000x)")
	fs.StringVar(&cfg.profile, "profile", "", "a directory to write berth's profiles into (go tool pprof reads them): /metrics, heap and goroutines while its idle streams are open, CPU while fan-out's lines are written")
	fs.StringVar(&kinds, "kinds", strings.Join(streamKinds, ","), "the kinds of idle stream the streams phase opens, comma-separated: "+strings.Join(streamKinds, ", "))
	fs.StringVar(&only, "phases", strings.Join(phases, ","), "the parts to run, comma-separated: "+strings.Join(phases, ", "))
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	bad := cfg.parseLists(rates, only, kinds)
	if fs.NArg() > 0 {
		bad = append(bad, "no arguments are taken")
	}
	bad = append(bad, cfg.check()...)
	if len(bad) > 0 {
		err := errors.New(strings.Join(bad, "; "))
		fmt.Fprintln(stderr, "bench:", err)
		return cfg, err
	}
	return cfg, nil
}

// parseLists reads -rates, -phases and -kinds into cfg and says what is
// wrong.
func (cfg *config) parseLists(rates, only, kinds string) []string {
	var bad []string
	for r := range strings.SplitSeq(rates, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || v <= 0 || v > 50000 {
			bad = append(bad, fmt.Sprintf("-rates: %q is not a whole rate in 1..50000", r))
			continue
		}
		cfg.rates = append(cfg.rates, v)
	}
	for p := range strings.SplitSeq(only, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(phases, p) {
			bad = append(bad, fmt.Sprintf("-phases: %q is none of %s", p, strings.Join(phases, ", ")))
			continue
		}
		cfg.phases = append(cfg.phases, p)
	}
	for k := range strings.SplitSeq(kinds, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(streamKinds, k) {
			bad = append(bad, fmt.Sprintf("-kinds: %q is none of %s", k, strings.Join(streamKinds, ", ")))
			continue
		}
		cfg.kinds = append(cfg.kinds, k)
	}
	return bad
}

// check says what is wrong with cfg's numbers.
func (cfg *config) check() []string {
	var bad []string
	if cfg.conns < 1 || cfg.conns > 1024 {
		bad = append(bad, "-conns must be in 1..1024")
	}
	if cfg.h2PerConn < 1 || cfg.h2PerConn > 100 { // Go's HTTP/2 server lets a connection carry at least 100 streams
		bad = append(bad, "-h2-per-conn must be in 1..100")
	}
	if cfg.openConns < 1 || cfg.openConns > 4096 {
		bad = append(bad, "-open-conns must be in 1..4096")
	}
	for _, r := range cfg.rates {
		if scheduled(r, cfg.rateDuration) > maxScheduled {
			bad = append(bad, fmt.Sprintf("-rates × -rate-duration: at most %d requests a run", maxScheduled))
			break
		}
	}
	if cfg.streams < 1 || cfg.streams > maxStreams {
		bad = append(bad, fmt.Sprintf("-streams must be in 1..%d", maxStreams))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		most time.Duration
	}{
		{"-duration", cfg.duration, 10 * time.Minute},
		{"-rate-duration", cfg.rateDuration, 10 * time.Minute},
		// Each subscriber keeps a latency and a receipt time per line: a
		// minute at 240 lines a second is 230 MB for 1,000 subscribers.
		{"-fanout-duration", cfg.fanoutDuration, time.Minute},
	} {
		if d.v < time.Second || d.v > d.most {
			bad = append(bad, fmt.Sprintf("%s must be in [1s, %s]", d.name, d.most))
		}
	}
	if !validBenchtime(cfg.benchtime) {
		bad = append(bad, fmt.Sprintf("-benchtime %q is neither a positive duration nor a count such as 1000x", cfg.benchtime))
	}
	return bad
}

// validBenchtime says whether s is what go test's -benchtime takes.
func validBenchtime(s string) bool {
	if n, ok := strings.CutSuffix(s, "x"); ok {
		v, err := strconv.Atoi(n)
		return err == nil && v > 0
	}
	d, err := time.ParseDuration(s)
	return err == nil && d > 0 && d <= 10*time.Minute
}

// runs says whether phase is among the chosen ones.
func (cfg *config) runs(phase string) bool { return slices.Contains(cfg.phases, phase) }
