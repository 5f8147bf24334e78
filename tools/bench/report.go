package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything one run measured, as written to the JSON file.
type report struct {
	Machine machine    `json:"machine"`
	Config  runConfig  `json:"config"`
	Closed  closedPair `json:"closed_loop_get_workspace"`
	Open    []openPair `json:"open_loop_get_workspace"`
	SSE     ssePair    `json:"idle_sse_streams"`
	Rows    []row      `json:"table"`
}

// machine describes where the figures come from.
type machine struct {
	CPU          string `json:"cpu"`
	Cores        int    `json:"cores"`
	GoVersion    string `json:"go_version"`
	BerthVersion string `json:"berth_version"`
	Time         string `json:"time"`
}

// runConfig is the part of the flags that shapes the figures.
type runConfig struct {
	Conns         int       `json:"closed_loop_conns"`
	DurationS     float64   `json:"closed_loop_seconds"`
	Rates         []float64 `json:"open_loop_rates"`
	RateDurationS float64   `json:"open_loop_seconds"`
	OpenWorkers   int       `json:"open_loop_workers"`
	Streams       int       `json:"sse_streams"`
}

type closedPair struct {
	Berth closedResult `json:"berth"`
	Floor closedResult `json:"floor"`
}

type openPair struct {
	Berth openResult `json:"berth"`
	Floor openResult `json:"floor"`
}

type ssePair struct {
	Berth streamResult `json:"berth"`
	Floor streamResult `json:"floor"`
}

// row is one line of the table: a figure for berth and its floor, berth's
// figure over the floor's, and the target issue #18 sets.
type row struct {
	Figure string  `json:"figure"`
	Unit   string  `json:"unit"`
	Berth  float64 `json:"berth"`
	Floor  float64 `json:"floor"`
	Ratio  float64 `json:"ratio"`
	Target string  `json:"target"`
}

func newReport(cfg config) *report {
	return &report{
		Machine: machine{
			CPU: cpuModel(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
			BerthVersion: gitDescribe(), Time: time.Now().UTC().Format(time.RFC3339),
		},
		Config: runConfig{
			Conns: cfg.conns, DurationS: cfg.duration.Seconds(), Rates: cfg.rates,
			RateDurationS: cfg.rateDuration.Seconds(), OpenWorkers: cfg.openWorkers, Streams: cfg.streams,
		},
	}
}

// rows builds the table from the figures.
func (r *report) rows() []row {
	rows := []row{{
		Figure: fmt.Sprintf("GetWorkspace, closed loop, %d conns", r.Config.Conns), Unit: "req/s",
		Berth: r.Closed.Berth.RPS, Floor: r.Closed.Floor.RPS, Target: "≥ 0.5× floor",
	}}
	for _, o := range r.Open {
		name := fmt.Sprintf("GetWorkspace, open loop %g req/s", o.Berth.Rate)
		p99 := "—"
		if o.Berth.Rate >= 5000 {
			p99 = "≤ 10 ms and ≤ 3× floor"
		}
		rows = append(rows,
			row{Figure: name + ", achieved", Unit: "req/s", Berth: o.Berth.Achieved, Floor: o.Floor.Achieved, Target: "the rate"},
			row{Figure: name + ", p50", Unit: "ms", Berth: o.Berth.P50, Floor: o.Floor.P50, Target: "—"},
			row{Figure: name + ", p90", Unit: "ms", Berth: o.Berth.P90, Floor: o.Floor.P90, Target: "—"},
			row{Figure: name + ", p99", Unit: "ms", Berth: o.Berth.P99, Floor: o.Floor.P99, Target: p99},
			row{Figure: name + ", max", Unit: "ms", Berth: o.Berth.Max, Floor: o.Floor.Max, Target: "—"},
		)
	}
	rows = append(rows, row{
		Figure: fmt.Sprintf("RSS per idle SSE stream (%d streams)", r.SSE.Berth.Streams), Unit: "KiB",
		Berth: r.SSE.Berth.KiBPerStream, Floor: r.SSE.Floor.KiBPerStream, Target: "≤ 28 KiB and ≤ 1.25× floor",
	})
	for i := range rows {
		if rows[i].Floor != 0 {
			rows[i].Ratio = rows[i].Berth / rows[i].Floor
		}
	}
	return rows
}

// printTable writes the table, then the errors if any, to w.
func (r *report) printTable(w io.Writer) {
	r.Rows = r.rows()
	fmt.Fprintf(w, "\nberth %s · %s · %d cores · %s\n\n", r.Machine.BerthVersion, r.Machine.CPU, r.Machine.Cores, r.Machine.GoVersion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tberth\tfloor\tratio\ttarget")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f×\t%s\n", x.Figure, figure(x.Berth, x.Unit), figure(x.Floor, x.Unit), x.Ratio, x.Target)
	}
	_ = tw.Flush()
	errs := r.Closed.Berth.Errors + r.Closed.Floor.Errors
	for _, o := range r.Open {
		errs += int64(o.Berth.Errors + o.Floor.Errors)
	}
	if errs > 0 {
		fmt.Fprintf(w, "\n%d requests failed (see the JSON); their latencies are not in the percentiles\n", errs)
	}
}

// figure formats v with its unit.
func figure(v float64, unit string) string {
	switch unit {
	case "req/s":
		return fmt.Sprintf("%.0f req/s", v)
	case "ms":
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// write writes the report as indented JSON to path.
func (r *report) write(path string) error {
	if r.Rows == nil {
		r.Rows = r.rows()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600) // #nosec G703 -- the developer's -out flag names where the report goes
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// gitDescribe is `git describe --always --dirty` of the working directory.
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
