package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Output formats of -o.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// table is what a read command shows in table format.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// checkFormat refuses an -o the CLI does not know.
func (a *app) checkFormat() error {
	switch a.output {
	case formatTable, formatJSON, formatYAML:
		return nil
	}
	return usageError{fmt.Errorf("-o %q: want table, json or yaml", a.output)}
}

// print writes res in the chosen format: json is the protojson of the
// response (one document, field names as in the API, for jq), yaml the
// same document in YAML, table the rows render builds.
func (a *app) print(res proto.Message, render func() *table) error {
	switch a.output {
	case formatJSON:
		return writeJSON(a.io.Out, res, true)
	case formatYAML:
		return writeYAML(a.io.Out, res)
	}
	if render == nil {
		return writeYAML(a.io.Out, res)
	}
	return writeTable(a.io.Out, render(), width(a.io.Out))
}

func writeJSON(w io.Writer, m proto.Message, multiline bool) error {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	if multiline {
		opts.Multiline, opts.Indent = true, "  "
	}
	data, err := opts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

func writeYAML(w io.Writer, m proto.Message) error {
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// writeTable writes t in aligned columns, two spaces apart. When cols is
// set (a terminal), the widest columns are cut, with "…", until a row fits.
func writeTable(w io.Writer, t *table, cols int) error {
	n := len(t.header)
	widths := make([]int, n)
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i := 0; i < n && i < len(row); i++ {
			widths[i] = max(widths[i], utf8.RuneCountInString(oneLine(row[i])))
		}
	}
	if cols > 0 {
		fit(widths, t.header, cols-2*(n-1))
	}
	var b strings.Builder
	line := func(row []string) {
		b.Reset()
		for i := range n {
			cell := ""
			if i < len(row) {
				cell = cut(oneLine(row[i]), widths[i])
			}
			if i == n-1 {
				b.WriteString(cell)
				break
			}
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.header)
	for _, row := range t.rows {
		line(row)
	}
	return nil
}

// fit cuts columns until the widths sum to at most total: the widest
// column above its floor (its header, at least 6 runes) loses a rune at a
// time; the first column (the id people copy into the next command) is cut
// only when every other is at its floor, and never below 8 runes. A table
// that still does not fit overflows rather than losing more.
func fit(widths []int, header []string, total int) {
	floor := make([]int, len(widths))
	for i, wd := range widths {
		floor[i] = min(wd, max(6, utf8.RuneCountInString(header[i])))
	}
	floor[0] = min(widths[0], 8)
	for {
		sum, widest := 0, -1
		for i, wd := range widths {
			sum += wd
			if i > 0 && wd > floor[i] && (widest < 0 || wd > widths[widest]) {
				widest = i
			}
		}
		if sum <= total {
			return
		}
		if widest < 0 {
			if widths[0] <= floor[0] {
				return
			}
			widest = 0
		}
		widths[widest]--
	}
}

func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// ago words a timestamp for a table: "3m ago", or the date when older
// than a week; "-" when unset.
func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	t := ts.AsTime()
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.Local().Format("2006-01-02 15:04")
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	case d < 7*24*time.Hour:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
	return t.Local().Format("2006-01-02")
}

// enumName is an enum value's name without its type prefix, in lower case:
// TASK_STATUS_RUNNING becomes "running".
func enumName(full, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}
