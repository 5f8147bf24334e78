package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// The lines between which -readme writes the table.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// markdown is the run as Markdown: the command, the machine, the table
// and the notes.
func (r *report) markdown() string {
	r.finish()
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` on %s.\n\n", r.Command, r.Machine.line())
	b.WriteString("| figure | berth | floor | ratio | target | met |\n|---|---:|---:|---:|---|---|\n")
	for _, x := range r.Rows {
		c := x.cells()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", mdCell(x.Figure), c[0], c[1], c[2], mdCell(c[3]), c[4])
	}
	b.WriteString("\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", mdCell(n))
	}
	return b.String()
}

// mdCell escapes what would break a table cell.
func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// rewriteReadme replaces what lies between the marker lines of the file
// at path with body, keeping the markers and everything else. A file
// without both markers, in order and once each, is left alone and is an
// error. The new file is written beside the old and renamed over it, so
// a failure never leaves half a README.
func rewriteReadme(path, body string) error {
	old, err := os.ReadFile(path) // #nosec G304 -- the developer's -readme flag names the file
	if err != nil {
		return err
	}
	out, err := replaceBetween(old, body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".bench-tmp"
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()); err != nil { // #nosec G703 -- beside the developer's -readme file
		return err
	}
	if err := os.Rename(tmp, path); err != nil { // #nosec G703 -- beside the developer's -readme file
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// replaceBetween is doc with the lines between its marker lines replaced
// by body (which gets a final newline if it lacks one).
func replaceBetween(doc []byte, body string) ([]byte, error) {
	lines := bytes.SplitAfter(doc, []byte("\n"))
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(string(l)) {
		case beginMarker:
			if begin >= 0 {
				return nil, errors.New("two " + beginMarker + " lines")
			}
			begin = i
		case endMarker:
			if end >= 0 {
				return nil, errors.New("two " + endMarker + " lines")
			}
			end = i
		}
	}
	if begin < 0 || end < 0 || end < begin {
		return nil, errors.New("no " + beginMarker + " line followed by a " + endMarker + " line")
	}
	if body != "" && !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	var out bytes.Buffer
	for _, l := range lines[:begin+1] {
		out.Write(l)
	}
	out.WriteString(body)
	for _, l := range lines[end:] {
		out.Write(l)
	}
	return out.Bytes(), nil
}
