package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, c := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 99, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"one, p100", ms(7), 100, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"max of 1..100", hundred, 100, 100 * time.Millisecond},
		{"p99.9 of 1..100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p50 of four rounds up", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p51 of four", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"a tiny p is the min", ms(1, 2, 3, 4), 0.001, time.Millisecond},
		{"one slow outlier is the p99 of 99 fast and 1 slow", append(slices.Repeat(ms(1), 99), time.Second), 99, time.Millisecond},
		{"two slow outliers show at p99", append(slices.Repeat(ms(1), 98), time.Second, time.Second), 99, time.Second},
	} {
		if got := percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: percentile(p%g) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestAgentScheduleSpacesLinesEvenly(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		rate float64
		d    time.Duration
		n    int
		gap  time.Duration
	}{
		{1000, 5 * time.Second, 5000, time.Millisecond},
		{5000, 5 * time.Second, 25000, 200 * time.Microsecond},
		{3, 2 * time.Second, 6, time.Second / 3},
		{0.5, 4 * time.Second, 2, 2 * time.Second},
	} {
		n := int(c.rate * c.d.Seconds()) // as fanout sizes an agent's run
		if n != c.n {
			t.Errorf("%g/s × %s = %d lines, want %d", c.rate, c.d, n, c.n)
		}
		if due(0, c.rate) != 0 {
			t.Errorf("at %g/s the first request is due at %s, want at once", c.rate, due(0, c.rate))
		}
		for i := 1; i < n; i++ {
			gap := due(i, c.rate) - due(i-1, c.rate)
			if gap < c.gap-time.Nanosecond || gap > c.gap+time.Nanosecond {
				t.Fatalf("at %g/s requests %d and %d are %s apart, want %s", c.rate, i-1, i, gap, c.gap)
			}
		}
		// Every request is due within the run, the last one less than a
		// gap before its end: the pacer neither bunches up nor overruns.
		if last := due(n-1, c.rate); last >= c.d || c.d-last > c.gap+time.Nanosecond {
			t.Errorf("at %g/s for %s the last request is due at %s", c.rate, c.d, last)
		}
	}
}

func TestParseRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-rates", "1000,x"},
		{"-rates", "0"},
		{"-rates", "1e9"},
		{"-streams", "0"},
		{"-rates", "1.5"},
		{"-streams", "18001"},
		{"-conns", "0"},
		{"-open-conns", "0"},
		{"-h2-per-conn", "101"},
		{"-duration", "0s"},
		{"-fanout-duration", "61s"},
		{"-benchtime", "0x"},
		{"-benchtime", "soon"},
		{"-phases", "unary,nope"},
		{"-kinds", "sse,grpc"},
		{"-no-such-flag"},
		{"extra"},
		{"-rates", "50000", "-rate-duration", "10m"},
	} {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("parse(%q) took it", args)
		}
	}
	cfg, err := parse([]string{"-rates", "100, 200", "-streams", "10", "-phases", "fanout, unary", "-benchtime", "5000x", "-kinds", "h2, sse"}, io.Discard)
	if err != nil || !slices.Equal(cfg.rates, []int{100, 200}) || cfg.streams != 10 || !slices.Equal(cfg.kinds, []string{"h2", "sse"}) ||
		!slices.Equal(cfg.phases, []string{"fanout", "unary"}) || !cfg.runs("unary") || cfg.runs("ingest") || cfg.benchtime != "5000x" {
		t.Errorf("parse = %+v, %v", cfg, err)
	}
	cfg, err = parse(nil, io.Discard)
	if err != nil || cfg.streams != 10000 || !slices.Equal(cfg.phases, phases) || !slices.Equal(cfg.kinds, streamKinds) || !slices.Equal(cfg.rates, []int{1000, 5000}) {
		t.Errorf("the defaults: parse = %+v, %v", cfg, err)
	}
}
