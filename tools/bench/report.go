package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// report is everything one run measured, as written to the JSON file.
type report struct {
	Command string         `json:"command"`
	Machine machine        `json:"machine"`
	Config  runConfig      `json:"config"`
	Closed  *closedPair    `json:"closed_loop_get_workspace,omitempty"`
	Open    []openPair     `json:"open_loop_get_workspace,omitempty"`
	Idle    []idlePair     `json:"idle_streams,omitempty"`
	Fanout  []fanoutResult `json:"sse_fanout,omitempty"`
	Ingest  []ingestResult `json:"log_ingest,omitempty"`
	Rows    []row          `json:"table"`
	Notes   []string       `json:"notes"`
}

// runConfig is the part of the flags that shapes the figures.
type runConfig struct {
	Conns           int      `json:"closed_loop_conns"`
	DurationS       float64  `json:"closed_loop_seconds"`
	Rates           []int    `json:"open_loop_rates"`
	RateDurationS   float64  `json:"open_loop_seconds"`
	OpenConns       int      `json:"open_loop_max_conns"`
	Streams         int      `json:"idle_streams_per_kind"`
	H2PerConn       int      `json:"h2_streams_per_connection"`
	FanoutDurationS float64  `json:"fanout_seconds"`
	Benchtime       string   `json:"ingest_benchtime"`
	Phases          []string `json:"phases"`
}

// closedPair is the closed-loop run on berth and on its floor.
type closedPair struct {
	Berth closedResult `json:"berth"`
	Floor closedResult `json:"floor"`
}

// openPair is one open-loop rate on berth and on its floor.
type openPair struct {
	Berth openResult `json:"berth"`
	Floor openResult `json:"floor"`
}

// idlePair is one kind of idle stream (sse, ws, h2) on berth and its floor.
type idlePair struct {
	Kind  string       `json:"kind"`
	Berth streamResult `json:"berth"`
	Floor streamResult `json:"floor"`
}

// row is one line of the table: a figure for berth and, when there is
// one, its floor in the same run; berth's figure over the floor's; the
// target issue #18 sets; and whether it is met (nil: no target).
type row struct {
	Figure string   `json:"figure"`
	Unit   string   `json:"unit"`
	Berth  float64  `json:"berth"`
	Floor  *float64 `json:"floor,omitempty"`
	Ratio  *float64 `json:"ratio,omitempty"`
	Target string   `json:"target,omitempty"`
	Met    *bool    `json:"met,omitempty"`
}

// newReport starts the report of a run of args (the flags, as cfg).
func newReport(cfg config, args []string) *report {
	return &report{
		Command: strings.TrimSpace("just bench " + strings.Join(args, " ")),
		Machine: describeMachine(),
		Config: runConfig{
			Conns: cfg.conns, DurationS: cfg.duration.Seconds(), Rates: cfg.rates,
			RateDurationS: cfg.rateDuration.Seconds(), OpenConns: cfg.openConns, Streams: cfg.streams, H2PerConn: cfg.h2PerConn,
			FanoutDurationS: cfg.fanoutDuration.Seconds(), Benchtime: cfg.benchtime, Phases: cfg.phases,
		},
	}
}

// finish builds the table and the notes from the figures.
func (r *report) finish() {
	if r.Rows == nil {
		r.Rows = r.rows()
		r.Notes = r.notes()
	}
}

// printTable writes the table and its notes to w.
func (r *report) printTable(w io.Writer) {
	r.finish()
	fmt.Fprintf(w, "\n%s\n\n", r.Machine.line())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tberth\tfloor\tratio\ttarget\tmet")
	for _, x := range r.Rows {
		c := x.cells()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Figure, c[0], c[1], c[2], c[3], c[4])
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nNotes:")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

// cells are x's berth, floor, ratio, target and met columns as text.
func (x row) cells() [5]string {
	c := [5]string{figure(x.Berth, x.Unit), "—", "—", x.Target, "—"}
	if x.Floor != nil {
		c[1] = figure(*x.Floor, x.Unit)
	}
	if x.Ratio != nil {
		c[2] = fmt.Sprintf("%.2f×", *x.Ratio)
	}
	if c[3] == "" {
		c[3] = "—"
	}
	if x.Met != nil {
		c[4] = map[bool]string{true: "met", false: "NOT met"}[*x.Met]
	}
	return c
}

// figure formats v with its unit.
func figure(v float64, unit string) string {
	switch unit {
	case "req/s", "lines/s", "deliveries/s", "count":
		s := fmt.Sprintf("%.0f", v)
		if unit != "count" {
			s += " " + unit
		}
		return s
	case "ms":
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// write writes the report as indented JSON to path.
func (r *report) write(path string) error {
	r.finish()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600) // #nosec G703 -- the developer's -out flag names where the report goes
}
