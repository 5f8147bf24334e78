package telemetry_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/berthhq/berth/internal/telemetry"
)

// TestPanicsRecover: a panic in a goroutine is stopped, logged at ERROR
// with the caller's attributes, counted under its place on the shared
// counter, and handed to then; the process goes on.
func TestPanicsRecover(t *testing.T) {
	t.Parallel()
	reg := telemetry.NewRegistry()
	a, b := telemetry.NewPanics(reg, "stream"), telemetry.NewPanics(reg) // one counter
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	var got any
	var wg sync.WaitGroup
	wg.Go(func() {
		defer a.Recover(logger, "runner", func(v any) { got = v }, "task", "t-1")
		panic("boom")
	})
	wg.Go(func() {
		defer b.Recover(logger, "runner", nil)
		var m map[string]int
		//lint:ignore SA5000 the runtime error is the point: a bug raises one like it
		m["x"] = 1
	})
	wg.Go(func() {
		defer b.Recover(logger, "stream", nil)
	})
	wg.Wait()
	if got != "boom" {
		t.Errorf("then got %v", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "berth_panics_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			counts[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if len(counts) != 2 || counts["runner"] != 2 || counts["stream"] != 0 {
		t.Errorf("berth_panics_total = %v, want runner 2 and stream 0", counts)
	}
	for _, w := range []string{`"level":"ERROR"`, `"task":"t-1"`, `"panic":"boom"`, "assignment to entry in nil map", `"stack":`} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %s:\n%s", w, logs.String())
		}
	}
	var nilPanics *telemetry.Panics
	func() {
		defer nilPanics.Recover(nil, "runner", nil)
		panic("unlogged")
	}()
}
