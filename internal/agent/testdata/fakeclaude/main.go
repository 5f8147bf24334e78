// Command fakeclaude is a stand-in for the claude CLI in berth's tests: no
// model can be reached from a test, so it emits a recorded-style transcript
// in the CLI's stream-json format for the argv berth builds.
//
// It accepts the flags berth passes (-p, --output-format stream-json,
// --verbose, --max-turns, --allowedTools, --system-prompt, --model,
// --max-budget-usd, --resume, "--" then the prompt) and refuses others,
// like the real CLI. Markers in the prompt choose a mode:
//
//	[fail]      an is_error result, subtype error_during_execution, exit 1
//	[hang]      the init event, then nothing until killed
//	[nonjson]   one plain-text line among the events
//	[noresult]  every event but the result, exit 0
//	[slow]      200ms between events
//	[lines:N]   N extra assistant text lines in the first turn
//	[rate:R]    the [lines:N] lines paced at R a second, each written
//	            at once and ending "sent <unix nanoseconds>", the time it
//	            was written, so a reader on the same host can measure
//	            the latency from the write to its receipt
//	[width:W]   the [lines:N] lines padded with dots to W bytes each (at
//	            most 16000, one log entry): a flood that fills a reader's
//	            buffers with fewer lines
//	[cost:J]    the result's total_cost_usd is the JSON text J as is
//	            (-1000, 1e308, 1e400, "NaN"): a lying or broken CLI
//	[turns:J]   the same for num_turns
//	[tokens:J]  the same for usage.input_tokens
//	[env:NAME]  an assistant line "env NAME=<value>" (or "env NAME unset")
//	            in the first turn, to show what reached the CLI
//	[leak]      a misbehaving agent: the API key in the first turn's text,
//	            encoded (base64, base64url, hex, URL-escaped), and in
//	            plain text and base64 on stderr, each written in two
//	            halves
//
// It never reads stdin, needs ANTHROPIC_API_KEY set (an error result and
// exit 2 otherwise) and never prints the key unless told to ([leak]). Standard library only, so
// CGO_ENABLED=0 go build gives a static binary for a busybox container.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// toolTurns is the recorded conversation: each turn says something and
// calls a tool; a final turn answers. Turn 2's tool fails.
var toolTurns = []struct {
	text, tool string
	input      map[string]any
	result     string
	isError    bool
}{
	{"I'll look at the project layout first.", "Bash", map[string]any{"command": "ls -la"}, "total 8\nREADME.md\nmain.go", false},
	{"Let me read a file that may not exist.", "Read", map[string]any{"file_path": "/workspace/missing.go"}, "File does not exist.", true},
	{"Now I'll write the summary file.", "Write", map[string]any{"file_path": "/workspace/SUMMARY.md", "content": "# Summary\n"}, "File created successfully at: /workspace/SUMMARY.md", false},
}

const finalText = "Done: the project has a README and a main.go; I wrote SUMMARY.md."

type config struct {
	print, verbose       bool
	outputFormat         string
	maxTurns             int
	allowedTools, system string
	model, resume        string
	budget               float64
	prompt               string
}

func main() {
	cfg, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	e := &emitter{w: out, slow: strings.Contains(cfg.prompt, "[slow]")}

	session := cfg.resume
	if session == "" {
		session = newID()
	}
	if os.Getenv("ANTHROPIC_API_KEY") == "" {
		e.emit(map[string]any{
			"type": "result", "subtype": "error_during_execution", "is_error": true,
			"num_turns": 0, "duration_ms": 1, "total_cost_usd": 0, "session_id": session,
			"result": "Invalid API key · ANTHROPIC_API_KEY is not set",
		})
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		out.Flush()
		os.Exit(2)
	}
	code := run(cfg, e, session)
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	out.Flush()
	os.Exit(code)
}

func run(cfg config, e *emitter, session string) int {
	start := time.Now()
	model := cfg.model
	if model == "" {
		model = "claude-sonnet-4-5-20250929"
	}
	tools := []string{"Bash", "Edit", "Read", "Write", "Glob", "Grep"}
	if cfg.allowedTools != "" {
		tools = strings.Split(cfg.allowedTools, ",")
	}
	cwd, _ := os.Getwd()
	// #nosec G101 -- G101: test data, not a credential
	e.emit(map[string]any{
		"type": "system", "subtype": "init", "session_id": session, "cwd": cwd,
		"model": model, "tools": tools, "permissionMode": "default", "apiKeySource": "ANTHROPIC_API_KEY",
	})
	if strings.Contains(cfg.prompt, "[hang]") {
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		e.w.Flush()
		for {
			time.Sleep(time.Hour)
		}
	}
	if strings.Contains(cfg.prompt, "[nonjson]") {
		e.raw("Warning: this line is not JSON")
	}
	extra, rate := 0, 0
	if m := regexp.MustCompile(`\[lines:(\d+)\]`).FindStringSubmatch(cfg.prompt); m != nil {
		extra, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`\[rate:(\d+)\]`).FindStringSubmatch(cfg.prompt); m != nil {
		rate, _ = strconv.Atoi(m[1])
	}
	if m := regexp.MustCompile(`\[width:(\d+)\]`).FindStringSubmatch(cfg.prompt); m != nil {
		e.width, _ = strconv.Atoi(m[1])
		e.width = min(e.width, 16000)
	}
	fail := strings.Contains(cfg.prompt, "[fail]")
	answer := finalText
	if cfg.resume != "" {
		answer = "Resumed session " + cfg.resume + ". " + answer
	}

	allTurns := len(toolTurns) + 1 // tool turns, then the final answer
	if fail {
		allTurns = 1
	}
	turns := allTurns
	if cfg.maxTurns > 0 && turns > cfg.maxTurns {
		turns = cfg.maxTurns
	}
	usage := map[string]int{"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
	for t := 0; t < turns; t++ {
		msgID := fmt.Sprintf("msg_%s_%d", session[:8], t+1)
		in, outTok := 1200+300*t, 80+20*t
		usage["input_tokens"] += in
		usage["output_tokens"] += outTok
		msgUsage := map[string]int{"input_tokens": in, "output_tokens": outTok}
		if t == len(toolTurns) || fail && t == 0 {
			text := answer
			if fail {
				text = "I'll try, but something is going wrong."
			}
			e.assistant(msgID, session, msgUsage, map[string]any{"type": "text", "text": text})
			continue
		}
		tt := toolTurns[t]
		if t == 0 {
			e.assistant(msgID, session, msgUsage, map[string]any{"type": "thinking", "thinking": "The user wants an overview; list files first.", "signature": "sig"})
		}
		e.assistant(msgID, session, msgUsage, map[string]any{"type": "text", "text": tt.text})
		if t == 0 {
			e.extraLines(msgID, session, msgUsage, extra, rate)
			if strings.Contains(cfg.prompt, "[leak]") {
				e.leak(msgID, session, msgUsage)
			}
			for _, m := range regexp.MustCompile(`\[env:(\w+)\]`).FindAllStringSubmatch(cfg.prompt, -1) {
				text := "env " + m[1] + " unset"
				if v, ok := os.LookupEnv(m[1]); ok {
					text = "env " + m[1] + "=" + v
				}
				e.assistant(msgID, session, msgUsage, map[string]any{"type": "text", "text": text})
			}
		}
		toolID := fmt.Sprintf("toolu_%02d", t+1)
		e.assistant(msgID, session, msgUsage, map[string]any{"type": "tool_use", "id": toolID, "name": tt.tool, "input": tt.input})
		e.emit(map[string]any{
			"type": "user", "session_id": session,
			"message": map[string]any{"role": "user", "content": []any{map[string]any{
				"type": "tool_result", "tool_use_id": toolID, "content": tt.result, "is_error": tt.isError,
			}}},
		})
	}
	if strings.Contains(cfg.prompt, "[noresult]") {
		return 0
	}
	subtype, isError, text, code := "success", false, answer, 0
	switch {
	case fail:
		subtype, isError, text, code = "error_during_execution", true, "the stand-in agent failed as asked", 1
	case turns < allTurns:
		subtype, text = "error_max_turns", ""
	}
	cost := float64(usage["input_tokens"])*3e-6 + float64(usage["output_tokens"])*15e-6
	result := map[string]any{
		"type": "result", "subtype": subtype, "is_error": isError,
		"duration_ms": time.Since(start).Milliseconds(), "duration_api_ms": time.Since(start).Milliseconds(),
		"num_turns": turns, "result": text, "session_id": session,
		"total_cost_usd": cost, "usage": usage,
	}
	resultUsage := map[string]any{}
	for k, v := range usage {
		resultUsage[k] = v
	}
	result["usage"] = resultUsage
	for marker, set := range map[string]func(json.RawMessage){
		"cost":   func(j json.RawMessage) { result["total_cost_usd"] = j },
		"turns":  func(j json.RawMessage) { result["num_turns"] = j },
		"tokens": func(j json.RawMessage) { resultUsage["input_tokens"] = j },
	} {
		if m := regexp.MustCompile(`\[` + marker + `:([^\]\s]+)\]`).FindStringSubmatch(cfg.prompt); m != nil {
			set(json.RawMessage(m[1]))
		}
	}
	e.emit(result)
	return code
}

// parse reads the argv like the real CLI's parser: options with values
// take the next element verbatim, "--" ends options, one prompt.
func parse(args []string) (config, error) {
	var cfg config
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(a, "=")
		switch name {
		case "-p", "--print":
			cfg.print = true
			continue
		case "--verbose":
			cfg.verbose = true
			continue
		case "--output-format", "--max-turns", "--allowedTools", "--allowed-tools", "--system-prompt", "--model", "--max-budget-usd", "--resume", "-r":
		default:
			return cfg, fmt.Errorf("unknown option '%s'", name)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return cfg, fmt.Errorf("option '%s' argument missing", name)
			}
			i++
			value = args[i]
		}
		var err error
		switch name {
		case "--output-format":
			cfg.outputFormat = value
		case "--max-turns":
			cfg.maxTurns, err = strconv.Atoi(value)
		case "--allowedTools", "--allowed-tools":
			cfg.allowedTools = value
		case "--system-prompt":
			cfg.system = value
		case "--model":
			cfg.model = value
		case "--max-budget-usd":
			cfg.budget, err = strconv.ParseFloat(value, 64)
		case "--resume", "-r":
			cfg.resume = value
		}
		if err != nil {
			return cfg, fmt.Errorf("option '%s': invalid value %q", name, value)
		}
	}
	switch {
	case !cfg.print:
		return cfg, fmt.Errorf("the stand-in only runs headless (-p)")
	case cfg.outputFormat != "stream-json":
		return cfg, fmt.Errorf("the stand-in only speaks --output-format stream-json, got %q", cfg.outputFormat)
	case !cfg.verbose:
		return cfg, fmt.Errorf("when using --print, --output-format=stream-json requires --verbose")
	case len(positional) != 1:
		return cfg, fmt.Errorf("want exactly one prompt argument, got %d", len(positional))
	}
	cfg.prompt = positional[0]
	return cfg, nil
}

type emitter struct {
	w    *bufio.Writer
	slow bool
	n    int
	// width pads the [lines:N] lines ([width:W]).
	width int
}

func (e *emitter) emit(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	e.raw(string(b))
}

func (e *emitter) raw(line string) {
	if e.slow && e.n > 0 {
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		e.w.Flush()
		time.Sleep(200 * time.Millisecond)
	}
	e.n++
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	e.w.WriteString(line)
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	e.w.WriteByte('\n')
	if e.slow {
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		e.w.Flush()
	}
}

// extraLines writes the n lines of [lines:N]: at once, or, when rate is
// positive, line i when (i-1)/rate seconds have passed, each flushed as it
// is written and stamped with the time it was written. A line that falls
// behind its schedule (a late wake-up) is written at once, so the average
// rate holds.
func (e *emitter) extraLines(msgID, session string, usage map[string]int, n, rate int) {
	start := time.Now()
	for i := 1; i <= n; i++ {
		text := fmt.Sprintf("extra line %d of %d", i, n)
		if pad := e.width - len(text); pad > 0 {
			text += strings.Repeat(".", pad)
		}
		if rate > 0 {
			due := start.Add(time.Duration(i-1) * time.Second / time.Duration(rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			text += fmt.Sprintf(" sent %d", time.Now().UnixNano())
		}
		e.assistant(msgID, session, usage, map[string]any{"type": "text", "text": text})
		if rate > 0 {
			// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
			e.w.Flush()
		}
	}
}

func (e *emitter) assistant(msgID, session string, usage map[string]int, block map[string]any) {
	e.emit(map[string]any{
		"type": "assistant", "session_id": session,
		"message": map[string]any{
			"id": msgID, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
			"content": []any{block}, "usage": usage,
		},
	})
}

// leak prints the API key in the forms a program might: encoded in the
// assistant's text, and in halves on stderr.
func (e *emitter) leak(msgID, session string, usage map[string]int) {
	key := os.Getenv("ANTHROPIC_API_KEY")
	b := []byte(key)
	for _, form := range []string{
		base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)), url.QueryEscape(key),
	} {
		e.assistant(msgID, session, usage, map[string]any{"type": "text", "text": "the key is " + form})
	}
	// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
	e.w.Flush()
	for _, form := range []string{key, base64.StdEncoding.EncodeToString(b)} {
		half := len(form) / 2
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		os.Stderr.WriteString("stderr key " + form[:half])
		time.Sleep(20 * time.Millisecond)
		// #nosec G104 -- G104: best-effort cleanup or output in test support; a failure shows in the test
		os.Stderr.WriteString(form[half:] + " end\n")
	}
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
