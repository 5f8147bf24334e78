package agent_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/agent"
)

func collect(t *testing.T, r io.Reader) []string {
	t.Helper()
	var got []string
	if err := agent.Lines(r, func(b []byte) { got = append(got, string(b)) }); err != nil {
		t.Fatalf("Lines: %v", err)
	}
	return got
}

func TestLines(t *testing.T) {
	t.Parallel()
	got := collect(t, strings.NewReader("a\r\n\nb\nlast"))
	want := []string{"a", "", "b", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := collect(t, strings.NewReader("")); len(got) != 0 {
		t.Errorf("empty input gave %q", got)
	}
}

func TestLinesLong(t *testing.T) {
	t.Parallel()
	oneMiB := strings.Repeat("x", 3<<20) // well above one MiB, in one piece
	got := collect(t, iotest.HalfReader(strings.NewReader("short\n"+oneMiB+"\nafter\n")))
	if len(got) != 3 || got[0] != "short" || got[1] != oneMiB || got[2] != "after" {
		t.Fatalf("got %d lines, lengths %v", len(got), lens(got))
	}

	exact := strings.Repeat("y", agent.MaxLineBytes)
	got = collect(t, strings.NewReader(exact+"\nz\n"))
	if len(got) != 2 || got[0] != exact || got[1] != "z" {
		t.Fatalf("exactly MaxLineBytes: lengths %v", lens(got))
	}

	// Above the limit a line is split into pieces, on a rune boundary,
	// and nothing is lost.
	huge := strings.Repeat("é", agent.MaxLineBytes/2+10) // 2 bytes per rune, odd cut
	huge = "a" + huge
	got = collect(t, strings.NewReader(huge+"\nend"))
	if len(got) != 3 || got[2] != "end" {
		t.Fatalf("huge line: lengths %v", lens(got))
	}
	if got[0]+got[1] != huge {
		t.Error("pieces do not add up to the line")
	}
	for _, piece := range got[:2] {
		if len(piece) > agent.MaxLineBytes || !utf8.ValidString(piece) {
			t.Errorf("piece of %d bytes, valid UTF-8 %v", len(piece), utf8.ValidString(piece))
		}
	}
	// Without a final newline as well.
	got = collect(t, strings.NewReader(huge))
	if len(got) != 2 || got[0]+got[1] != huge {
		t.Errorf("huge unterminated line: lengths %v", lens(got))
	}
}

func TestLinesError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	var got []string
	err := agent.Lines(io.MultiReader(strings.NewReader("a\npartial"), iotest.ErrReader(boom)), func(b []byte) {
		got = append(got, string(bytes.Clone(b)))
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if strings.Join(got, "|") != "a|partial" {
		t.Errorf("got %q", got)
	}
}

func lens(s []string) []int {
	var n []int
	for _, x := range s {
		n = append(n, len(x))
	}
	return n
}
