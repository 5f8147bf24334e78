package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleReport is a run with one figure of each kind: the closed loop
// meets its target, the 5,000 req/s p99 does not, and so on.
func sampleReport() *report {
	return &report{
		Command: "just bench -streams 10",
		Machine: machine{CPU: "Test CPU", CPUs: 2, MemTotal: "1 kB", Kernel: "6.0", GoVersion: "go1.26", Commit: "abc1234", LoadAvg: "1 2 3", Date: "2026-12-03T08:00:00Z"},
		Config:  runConfig{Conns: 32, Rates: []int{5000}, RateDurationS: 2, Streams: 10, Benchtime: "2s"},
		Closed:  &closedPair{Berth: closedResult{RPS: 600}, Floor: closedResult{RPS: 1000}},
		Open: []openPair{{
			Berth: openResult{Rate: 5000, Sent: 10000, Achieved: 4990, P50: 1, P90: 2, P99: 30, Max: 40},
			Floor: openResult{Rate: 5000, Sent: 10000, Achieved: 5000, P50: 0.5, P90: 1, P99: 5, Max: 9},
		}},
		Idle: []idlePair{{Kind: kindSSE, Berth: streamResult{Streams: 10, KiBPerStream: 27}, Floor: streamResult{Streams: 10, KiBPerStream: 24}}},
		Fanout: []fanoutResult{
			{Tasks: 1, Subscribers: 1000, Rate: 240, Offered: 240000, Achieved: 190000, Steady: 201000, P50: 3, P99: 20},
			{Tasks: 1, Subscribers: 1000, Rate: 200, Offered: 200000, Achieved: 190000, Steady: 200500, P50: 3, P99: 20},
			{Tasks: 1, Subscribers: 150, Rate: 200, Offered: 30000, Achieved: 30000, Steady: 30000, Lost: 2, P50: 3, P99: 20},
		},
		Ingest: []ingestResult{{Name: "BenchmarkIngest/sqlite", LinesPerSec: 150000}, {Name: "BenchmarkIngest/postgres", LinesPerSec: 99000}},
	}
}

// met finds the row named figure and says whether it has a target and
// meets it.
func met(t *testing.T, rows []row, figure string) (hasTarget, ok bool) {
	t.Helper()
	i := slices.IndexFunc(rows, func(x row) bool { return x.Figure == figure })
	if i < 0 {
		t.Fatalf("no row %q", figure)
	}
	if rows[i].Met == nil {
		return false, false
	}
	return true, *rows[i].Met
}

func TestRowsJudgeTheTargets(t *testing.T) {
	t.Parallel()
	rows := sampleReport().rows()
	for _, c := range []struct {
		figure      string
		target, met bool
	}{
		{"GetWorkspace closed loop, 32 conns", true, true}, // 0.6× ≥ 0.5×
		{"GetWorkspace open loop 5000 req/s, p99", true, false},
		{"GetWorkspace open loop 5000 req/s, p50", false, false},
		{"RSS per idle SSE stream (task log), 10 streams", true, true},                             // 27 KiB, 1.125×
		{"SSE fan-out 1×1000 at 240 lines/s, deliveries sustained (offered 240000/s)", true, true}, // the steady figure, not the whole run's
		{"SSE fan-out 1×1000 at 240 lines/s, deliveries over the whole run", false, false},
		{"SSE fan-out 1×1000 at 200 lines/s, deliveries sustained (offered 200000/s)", false, false}, // offered the target's rate exactly: no judgement
		{"SSE fan-out 1×1000 at 240 lines/s, latency p99", false, false},
		{"SSE fan-out 1×1000 at 200 lines/s, latency p99", false, false}, // not the latency run
		{"SSE fan-out 1×150 at 200 lines/s, latency p99", true, false},   // lost lines
		{"SSE fan-out 1×150 at 200 lines/s, lost + duplicated", true, false},
		{"log ingest Ingest/postgres", true, false},
		{"log ingest Ingest/sqlite", false, false},
	} {
		target, ok := met(t, rows, c.figure)
		if target != c.target || ok != c.met {
			t.Errorf("%s: target %v met %v, want target %v met %v", c.figure, target, ok, c.target, c.met)
		}
	}
	i := slices.IndexFunc(rows, func(x row) bool { return x.Figure == "GetWorkspace closed loop, 32 conns" })
	if r := rows[i].Ratio; r == nil || *r != 0.6 {
		t.Errorf("closed-loop ratio = %v, want 0.6", r)
	}
}

func TestTableAndMarkdownShowEveryRow(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	var table bytes.Buffer
	r.printTable(&table)
	md := r.markdown()
	for _, want := range []string{"abc1234", "Test CPU × 2", "load 1 2 3", "NOT met", "0.60×", "600 req/s", "1000 req/s", "≤ 10 ms and ≤ 3× floor", "99000 lines/s", "Idle streams: 10 per kind"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
	if !strings.HasPrefix(md, "`just bench -streams 10` on berth abc1234") {
		t.Errorf("the Markdown does not start with the command and the machine:\n%s", md)
	}
	// One table line per row, each with the six columns.
	lines := strings.Count(md, "\n| ")
	if lines != len(r.Rows)+1 { // the header, then the rows (the separator starts with |-)
		t.Errorf("the Markdown has %d table lines, want %d:\n%s", lines, len(r.Rows)+1, md)
	}
	for l := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(l, "| ") && strings.Count(l, " | ") != 5 {
			t.Errorf("a table line without six cells: %q", l)
		}
	}
}

func TestReadmeRewritesOnlyBetweenTheMarkers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "README.md")
	doc := "# berth\n\nintro\n\n" + beginMarker + "\nold table\nold notes\n" + endMarker + "\n\n## After\ntext\n"
	if err := os.WriteFile(path, []byte(doc), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := rewriteReadme(path, "new | table"); err != nil {
		t.Fatal(err)
	}
	want := "# berth\n\nintro\n\n" + beginMarker + "\nnew | table\n" + endMarker + "\n\n## After\ntext\n"
	if got := read(t, path); got != want {
		t.Errorf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the mode is not kept: %v, %v", fi.Mode(), err)
	}
	// Again, with a longer body: the same place, nothing left of the last.
	body := sampleReport().markdown()
	if err := rewriteReadme(path, body); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "# berth\n\nintro\n\n"+beginMarker+"\n"+body+endMarker+"\n\n## After\ntext\n" {
		t.Errorf("rewritten twice:\n%s", got)
	}
	if left, _ := filepath.Glob(path + ".*"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestReadmeWithoutMarkersIsLeftAlone(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"none":     "# berth\n",
		"no end":   beginMarker + "\nx\n",
		"no begin": "x\n" + endMarker + "\n",
		"reversed": endMarker + "\nx\n" + beginMarker + "\n",
		"twice":    beginMarker + "\n" + endMarker + "\n" + beginMarker + "\n" + endMarker + "\n",
		"inline":   "see " + beginMarker + " and " + endMarker + "\n",
	} {
		path := filepath.Join(t.TempDir(), "README.md")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := rewriteReadme(path, "table"); err == nil {
			t.Errorf("%s: rewritten", name)
		}
		if got := read(t, path); got != doc {
			t.Errorf("%s: changed to %q", name, got)
		}
	}
	if err := rewriteReadme(filepath.Join(t.TempDir(), "missing.md"), "table"); err == nil {
		t.Error("a missing file: no error")
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path) // #nosec G304 -- the test's temporary file
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSteadyDeliveries: the sustained figure counts the run's middle, so a
// server that keeps up shows the offered rate though the whole run's
// figure is held down by a late start and a slow last line; one that
// falls behind shows what it delivers.
func TestSteadyDeliveries(t *testing.T) {
	t.Parallel()
	const rate, seconds, subs = 200, 5, 10
	run := func(every time.Duration) fanoutResult {
		start := time.Unix(1000, 0)
		first := start.Add(300 * time.Millisecond) // the agent's start
		var all []*subscriber
		for range subs {
			s := &subscriber{}
			for i := range rate * seconds {
				at := first.Add(time.Duration(i) * every)
				s.recv = append(s.recv, at.UnixNano())
				s.lat = append(s.lat, time.Millisecond)
				s.last = at.Add(200 * time.Millisecond) // a slow last line
			}
			all = append(all, s)
		}
		r := fanoutResult{Tasks: 1, Subscribers: subs, Rate: rate, Lines: rate * seconds, Expected: subs * rate * seconds}
		r.fill(all, start)
		return r
	}
	keeps := run(time.Second / rate)
	if keeps.Steady < 0.99*subs*rate || keeps.Steady > 1.01*subs*rate {
		t.Errorf("keeping up: sustained %.0f/s, want %d/s", keeps.Steady, subs*rate)
	}
	if keeps.Achieved >= 0.95*subs*rate {
		t.Errorf("keeping up: the whole run's %.0f/s should show the start and the tail", keeps.Achieved)
	}
	behind := run(2 * time.Second / rate) // half the rate
	if behind.Steady < 0.49*subs*rate || behind.Steady > 0.51*subs*rate {
		t.Errorf("falling behind: sustained %.0f/s, want %d/s", behind.Steady, subs*rate/2)
	}
}

// TestNotesNameAFloorOverTheBound: a kind whose bare floor costs more than
// the absolute bound gets a note that says so; one under it gets none. The
// closed loop's CPU per call is in the notes when both sides answered.
func TestNotesNameAFloorOverTheBound(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	r.Idle = append(r.Idle, idlePair{Kind: kindH2, Berth: streamResult{Streams: 10, KiBPerStream: 57}, Floor: streamResult{Streams: 10, KiBPerStream: 36.5}})
	r.Closed = &closedPair{
		Berth: closedResult{Requests: 1000, RPS: 600, ServerCPU: 0.084, HarnessCPU: 0.061},
		Floor: closedResult{Requests: 2000, RPS: 1000, HarnessCPU: 0.14},
	}
	notes := strings.Join(r.notes(), "\n")
	for _, want := range []string{
		"RSS per idle Connect stream (StreamTaskLogs, h2c): the bare floor alone costs 36.5 KiB a stream, over the 28 KiB bound",
		"Closed loop CPU per call: berth 84 µs and its load generator 61 µs; the floor and its load generator, one process, 70 µs",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("the notes lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "RSS per idle SSE stream (task log): the bare floor") {
		t.Errorf("a floor under the bound is named over it:\n%s", notes)
	}
}
