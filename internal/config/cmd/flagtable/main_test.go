package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/config"
)

func TestRewritesOnlyBetweenTheMarkers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "README.md")
	doc := "# Title\n\nbefore\n\n<!-- flags:begin -->\n| stale | table |\n<!-- flags:end -->\n\nafter\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	err := run([]string{"-check", path}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("-check on a stale table: %v, want an error saying it differs", err)
	}
	if got, _ := os.ReadFile(path); string(got) != doc {
		t.Fatalf("-check changed the file:\n%s", got)
	}
	if err := run([]string{path}, &stderr); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := config.WriteFlagTable(&table); err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\nbefore\n\n<!-- flags:begin -->\n" + table.String() + "<!-- flags:end -->\n\nafter\n"
	if string(got) != want {
		t.Errorf("rewritten file:\n%s\nwant:\n%s", got, want)
	}
	if err := run([]string{"-check", path}, &stderr); err != nil {
		t.Errorf("-check after a rewrite: %v", err)
	}
}

func TestMissingMarkers(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"no markers\n", "<!-- flags:begin -->\nno end\n"} {
		path := filepath.Join(t.TempDir(), "README.md")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := run([]string{path}, new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), "flags:") {
			t.Errorf("%q: %v, want an error naming the missing marker", doc, err)
		}
	}
}

func TestRepositoryREADMEIsCurrent(t *testing.T) {
	t.Parallel()
	if err := run([]string{"-check", "../../../../README.md"}, new(bytes.Buffer)); err != nil {
		t.Errorf("%v", err)
	}
}
