package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestParseIngestFindsEveryLinesPerSecond(t *testing.T) {
	t.Parallel()
	out := []byte(`goos: linux
goarch: amd64
pkg: github.com/berthhq/berth/internal/tasklog
cpu: Intel(R) Xeon(R) Processor
BenchmarkIngest/sqlite-2         	  300000	      6606 ns/op	    151378 lines/s
BenchmarkIngest/postgres-2       	  100000	     16393 ns/op	     61002 lines/s	     512 B/op
BenchmarkIngest/postgres/copy-12 	  100000	      9000 ns/op	    111111.5 lines/s
BenchmarkIngestOther-2 	 1	 1 ns/op
BenchmarkIngest/broken-2 	 1	 1 ns/op	 x lines/s
PASS
ok  	github.com/berthhq/berth/internal/tasklog	12.3s
`)
	want := []ingestResult{
		{"BenchmarkIngest/sqlite", 151378},
		{"BenchmarkIngest/postgres", 61002},
		{"BenchmarkIngest/postgres/copy", 111111.5},
	}
	if got := parseIngest(out); !slices.Equal(got, want) {
		t.Errorf("parseIngest = %v, want %v", got, want)
	}
	if got := parseIngest([]byte("FAIL\n")); len(got) != 0 {
		t.Errorf("parseIngest of a failure = %v", got)
	}
}

func TestMarkedTimeIsFoundByByteSearch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		line string
		t    int64
		ok   bool
	}{
		{`data: {"seq":"7","message":"benchT=1796284863253164335;"}` + "\n", 1796284863253164335, true},
		{`data: {"message":"task started"}` + "\n", 0, false},
		{`data: {"message":"benchT=12"}` + "\n", 0, false}, // no terminator
		{`data: {"message":"benchT=x;"}` + "\n", 0, false},
	} {
		got, ok := markedTime([]byte(c.line))
		if got != c.t || ok != c.ok {
			t.Errorf("markedTime(%q) = %d, %v; want %d, %v", c.line, got, ok, c.t, c.ok)
		}
	}
}

func TestAgentPromptIsClaudesLastArgument(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args   []string
		prompt string
		ok     bool
	}{
		{[]string{"-p", "--output-format", "stream-json", "--verbose", "--max-turns", "50", "--", "idle"}, "idle", true},
		{[]string{"-p", "--output-format", "stream-json", "--", "emit 200 10 /tmp/g"}, "emit 200 10 /tmp/g", true},
		{[]string{"-streams", "10"}, "", false},
		{[]string{"-p", "--", "idle"}, "", false}, // not claude's stream-json argv
		{[]string{"--output-format", "stream-json", "--", "idle", "more"}, "", false},
	} {
		prompt, ok := agentPrompt(c.args)
		if prompt != c.prompt || ok != c.ok {
			t.Errorf("agentPrompt(%q) = %q, %v; want %q, %v", c.args, prompt, ok, c.prompt, c.ok)
		}
	}
}

func TestStatCPUReadsUtimeAndStime(t *testing.T) {
	t.Parallel()
	// A command name with spaces and a parenthesis, utime 250, stime 50.
	line := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 1000000 200 18446744073709551615\n"
	if d, err := statCPU(line); err != nil || d != 3*time.Second {
		t.Errorf("statCPU = %v, %v; want 3s", d, err)
	}
	for _, bad := range []string{"", "4242 cmd S 1", "4242 (cmd) S 1 2 3", "4242 (cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 x 50 0"} {
		if _, err := statCPU(bad); err == nil {
			t.Errorf("statCPU(%q) took it", bad)
		}
	}
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Errorf("processCPU(self): %v", err)
	}
}
