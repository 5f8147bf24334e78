package main_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testsvc"
)

// BenchmarkColdStart measures exec → the first 200 from /ready: the time a
// scaled-to-zero machine takes before it can serve. Each start is on a
// database that already exists (its migrations applied by a first start
// that is not measured), with the process runtime, so the figure is
// berth's own start-up: config, store, migrations check, services,
// listener.
//
//	go test -run '^$' -bench ColdStart -benchtime 10x ./cmd/berth/
func BenchmarkColdStart(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { coldStart(b, nil) })
	b.Run("postgres", func(b *testing.B) { coldStart(b, []string{"--database-url", testsvc.Postgres(b)}) })
}

func coldStart(b *testing.B, extra []string) {
	dataDir := b.TempDir()
	args := append([]string{"serve", "--runtime", "process", "--admin-addr", "", "--data-dir", dataDir}, extra...)
	startOnce(b, args) // creates the database and the signing key
	var times []time.Duration
	for b.Loop() {
		times = append(times, startOnce(b, args))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}

// startOnce starts berth, waits for /ready to answer 200, stops it, and
// returns how long it took to become ready.
func startOnce(b *testing.B, args []string) time.Duration {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, append(args, "--addr", addr)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	for deadline := start.Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if res, err := client.Get("http://" + addr + "/ready"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		if time.Now().After(deadline) {
			b.Fatal(fmt.Errorf("berth not ready within 30s"))
		}
	}
}
