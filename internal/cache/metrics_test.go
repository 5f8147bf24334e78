package cache_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthhq/berth/internal/cache"
)

// TestHitAndMissCounters: reads are counted as hits and misses by cache
// name, from zero when the cache is made; the hit ratio is left to a query
// over the two counters, not exported as a gauge of its own.
func TestHitAndMissCounters(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c, err := cache.New("things", cache.Options{TTL: time.Minute, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	want := func(stage string, hits, misses int) {
		t.Helper()
		expect := `
# HELP berth_cache_hits_total Cache reads answered without calling the loader.
# TYPE berth_cache_hits_total counter
berth_cache_hits_total{cache="things"} ` + itoa(hits) + `
# HELP berth_cache_misses_total Cache reads that called the loader or waited for another read's call of it (including every read while Valkey is degraded).
# TYPE berth_cache_misses_total counter
berth_cache_misses_total{cache="things"} ` + itoa(misses) + `
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "berth_cache_hits_total", "berth_cache_misses_total"); err != nil {
			t.Errorf("%s: %v", stage, err)
		}
	}
	want("new", 0, 0)
	load := func(context.Context) ([]byte, error) { return []byte("v"), nil }
	for range 3 {
		if _, err := c.Get(t.Context(), "k", load); err != nil {
			t.Fatal(err)
		}
	}
	want("after three reads of one key", 2, 1)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.Contains(f.GetName(), "ratio") {
			t.Errorf("%s: the ratio is a query over the counters, not a metric", f.GetName())
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
