package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// jsonHandler writes what slog's JSONHandler with berth's redaction
// writes, byte for byte, but encodes the records berth writes on every
// request itself: one access log line per request went through slog's
// general path (a ReplaceAttr call, a deferred recover and a kind switch per
// attribute), a seventh of an in-process GetWorkspace's CPU.
//
// It encodes a record whose attributes are strings, integers, booleans,
// durations and times under plain keys; anything else (groups, LogValuers,
// floats, values of kind Any, an empty key, a year JSON's RFC 3339 cannot
// hold) goes to the JSONHandler it wraps, as does every logger derived
// with WithAttrs or WithGroup. Both write to one locked writer, so their
// lines never interleave. jsonlog_internal_test.go holds it to slog's
// output.
type jsonHandler struct {
	level slog.Leveler
	out   *lockedWriter
	std   slog.Handler // slog.NewJSONHandler on out, with the same options
}

// lockedWriter serialises the writes of both of jsonHandler's paths.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// newJSONHandler is a jsonHandler writing to w; opts.ReplaceAttr must be
// redact, which encode applies itself.
func newJSONHandler(w io.Writer, opts *slog.HandlerOptions) *jsonHandler {
	out := &lockedWriter{w: w}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	return &jsonHandler{level: level, out: out, std: slog.NewJSONHandler(out, opts)}
}

func (h *jsonHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *jsonHandler) Handle(ctx context.Context, r slog.Record) error {
	bp := linePool.Get().(*[]byte)
	line, ok := encode((*bp)[:0], r)
	if !ok {
		putLine(bp, line)
		return h.std.Handle(ctx, r)
	}
	_, err := h.out.Write(line)
	putLine(bp, line)
	return err
}

func (h *jsonHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.std.WithAttrs(attrs)
}

func (h *jsonHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.std.WithGroup(name)
}

// linePool keeps line buffers, as slog's handlers do.
var linePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

func putLine(bp *[]byte, line []byte) {
	const maxKept = 16 << 10 // a rare long line is not kept for ever
	if cap(line) > maxKept {
		return
	}
	*bp = line[:0]
	linePool.Put(bp)
}

// encode appends r's line to b as slog's JSONHandler with redact writes it,
// or reports false if r holds what only that handler encodes.
func encode(b []byte, r slog.Record) ([]byte, bool) {
	b = append(b, '{')
	first := true
	if !r.Time.IsZero() {
		var ok bool
		if b, ok = appendTime(append(b, `"time":`...), r.Time.Round(0)); !ok {
			return b, false
		}
		first = false
	}
	if !first {
		b = append(b, ',')
	}
	b = append(b, `"level":`...)
	b = appendString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, r.Message)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		return b, false
	}
	return append(b, '}', '\n'), true
}

// appendAttr appends ,"key":value for a, redacted as redact does, or
// reports false for what encode leaves to slog.
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value
	switch v.Kind() {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool, slog.KindDuration, slog.KindTime:
	default:
		return b, false
	}
	if a.Key == "" {
		return b, false
	}
	b = append(b, ',')
	b = appendString(b, a.Key)
	b = append(b, ':')
	if secretKey(a.Key) {
		return appendString(b, redacted), true
	}
	switch v.Kind() {
	case slog.KindString:
		b = appendString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		return appendTime(b, v.Time())
	}
	return b, true
}

// appendTime appends t as slog's JSON handler does, or reports false for a
// year outside RFC 3339's four digits, where slog appends an error too.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y >= 10000 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendString appends s as a JSON string, escaped as slog escapes it:
// '"', '\\' and control characters, invalid UTF-8 as U+FFFD, and U+2028
// and U+2029; HTML's characters are left as they are.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
