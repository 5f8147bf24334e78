package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The harness is also the claude program of berth's tasks: berth runs
// --claude-path with claude's argv (`-p --output-format stream-json …
// -- <prompt>`), and a prompt of this form says what to do:
//
//	idle                         print the init line, then sleep until killed
//	emit <rate> <count> <gate>   print the init line, wait until the file
//	                             gate exists, print count lines at rate a
//	                             second, then the result line, and exit
//
// An emitted line is an assistant text event whose text is
// "benchT=<UnixNano>;" (the wall clock at its write), so a subscriber
// finds the time by a byte search and the delivery latency is receipt
// minus that time. Every message has the same id, so the lines after the
// first do not count as turns of their own.

// markerPrefix starts the text of every emitted line.
const markerPrefix = "benchT="

// agentLifetime bounds an agent's life even if berth forgets it: no run of
// the harness takes this long.
const agentLifetime = 20 * time.Minute

// gateWait bounds how long an emitting agent waits for its gate.
const gateWait = 5 * time.Minute

// agentPrompt is the prompt after "--" when args are claude's argv, and
// whether they are.
func agentPrompt(args []string) (string, bool) {
	i := slices.Index(args, "--")
	if i < 0 || i != len(args)-2 || !slices.Contains(args[:i], "stream-json") {
		return "", false
	}
	return args[i+1], true
}

// runAgent is the body of the harness run as claude.
func runAgent(prompt string) error {
	// Go with berth: a SIGKILLed berth cannot stop its tasks, and an idle
	// agent would otherwise sleep on for agentLifetime.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		return errno
	}
	if err := writeLine(`{"type":"system","subtype":"init","cwd":".","session_id":"bench","tools":[],"mcp_servers":[],"model":"bench","permissionMode":"default"}`); err != nil {
		return err
	}
	f := strings.Fields(prompt)
	switch {
	case len(f) == 1 && f[0] == "idle":
		time.Sleep(agentLifetime)
		return nil
	case len(f) == 4 && f[0] == "emit":
		rate, err1 := strconv.ParseFloat(f[1], 64)
		count, err2 := strconv.Atoi(f[2])
		if err := errors.Join(err1, err2); err != nil || rate <= 0 || count < 0 {
			return fmt.Errorf("bad emit prompt %q", prompt)
		}
		if err := waitGate(f[3]); err != nil {
			return err
		}
		return emit(rate, count)
	}
	return fmt.Errorf("unknown prompt %q (idle, or emit <rate> <count> <gate>)", prompt)
}

// waitGate polls for the file gate, so that every subscriber is in place
// before the first line.
func waitGate(gate string) error {
	deadline := time.Now().Add(gateWait)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(gate); err == nil { // #nosec G703 -- the harness names the gate in the prompt it gives its own agent
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("gate %s not opened in %s", gate, gateWait)
}

// emit prints count lines at rate a second on a fixed schedule (a late
// line is written at once, not skipped), then the result line.
func emit(rate float64, count int) error {
	start := time.Now()
	for i := range count {
		if wait := time.Until(start.Add(due(i, rate))); wait > 0 {
			time.Sleep(wait)
		}
		line := `{"type":"assistant","message":{"id":"bench","role":"assistant","content":[{"type":"text","text":"` +
			markerPrefix + strconv.FormatInt(time.Now().UnixNano(), 10) + `;"}]}}`
		if err := writeLine(line); err != nil {
			return err
		}
	}
	return writeLine(`{"type":"result","subtype":"success","is_error":false,"num_turns":1,"duration_ms":` +
		strconv.FormatInt(time.Since(start).Milliseconds(), 10) + `,"total_cost_usd":0,"result":"done","session_id":"bench"}`)
}

// writeLine writes s and a newline in one write, so berth reads whole lines
// as soon as they are written.
func writeLine(s string) error {
	_, err := os.Stdout.WriteString(s + "\n")
	return err
}

// due is when the i-th line (from 0) of an agent writing rate lines a
// second is meant to be written, counted from its first.
func due(i int, rate float64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}
