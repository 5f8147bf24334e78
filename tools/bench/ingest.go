package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ingestResult is one `lines/s` figure of BenchmarkIngest.
type ingestResult struct {
	Name        string  `json:"name"`
	LinesPerSec float64 `json:"lines_per_sec"`
}

// ingest runs internal/tasklog's BenchmarkIngest (the task log writer
// into SQLite and Postgres) as `go test` in a process group of its own,
// and returns every lines/s it reports. Postgres is found as the tests
// find it (internal/testsvc): BERTH_TEST_DATABASE_URL from the
// environment, which the subprocess inherits, or a cluster the test
// binary starts in a temporary directory and whose watchdog removes it
// however the binary ends. On ctx's end the whole group is killed.
func ingest(ctx context.Context, benchtime string) ([]ingestResult, []byte, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkIngest", // #nosec G204 -- fixed arguments but -benchtime, which parse checked
		"-benchtime", benchtime, "./internal/tasklog/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, out, fmt.Errorf("go test -bench ^BenchmarkIngest ./internal/tasklog/: %w", err)
	}
	res := parseIngest(out)
	if len(res) == 0 {
		return nil, out, fmt.Errorf("BenchmarkIngest reported no lines/s")
	}
	return res, out, nil
}

// gomaxprocsSuffix is the -N that go test appends to a benchmark's name.
var gomaxprocsSuffix = regexp.MustCompile(`-\d+$`)

// parseIngest finds every "<value> lines/s" of go test's benchmark
// output, with the benchmark's name (without its -GOMAXPROCS suffix).
func parseIngest(out []byte) []ingestResult {
	var res []ingestResult
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 3 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		for i := 1; i < len(f); i++ {
			if f[i] != "lines/s" {
				continue
			}
			if v, err := strconv.ParseFloat(f[i-1], 64); err == nil {
				res = append(res, ingestResult{Name: gomaxprocsSuffix.ReplaceAllString(f[0], ""), LinesPerSec: v})
			}
		}
	}
	return res
}
