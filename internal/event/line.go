package event

import (
	"runtime"
	"sync"
	"weak"

	"github.com/berthhq/berth/internal/store"
)

// Line is a stored log line as published on its task's topic: one value,
// shared by every subscriber of the task, that keeps each wire format's
// encoding of the line once it is made, so that a thousand subscribers
// cost one encoding per format rather than a thousand. It must not change
// once published; Encoded is safe for concurrent use.
type Line struct {
	store.LogEntry
	encoded [formats]encoding

	sharedOnce sync.Once
	shared     any
}

// NewLine is the published form of a stored log line.
func NewLine(e store.LogEntry) *Line { return &Line{LogEntry: e} }

// Format names a wire format whose encoding a Line keeps.
type Format int

// The wire formats of a Line.
const (
	// FormatSSE is the line's whole SSE frame.
	FormatSSE Format = iota
	// FormatWebSocket is the line's whole WebSocket event frame.
	FormatWebSocket
	// FormatConnectJSON is the JSON of the line's Connect stream message
	// (Shared), without the envelope.
	FormatConnectJSON
	// FormatConnectProto is the binary protobuf of the line's Connect
	// stream message (Shared), without the envelope.
	FormatConnectProto
	formats
)

// encoding is one format's bytes, made once.
type encoding struct {
	once sync.Once
	b    []byte
	err  error
}

// Encoded returns the line in format f: encode's result for the first
// caller, the same bytes (not to be changed) for every later one.
func (l *Line) Encoded(f Format, encode func(store.LogEntry) ([]byte, error)) ([]byte, error) {
	e := &l.encoded[f]
	e.once.Do(func() { e.b, e.err = encode(l.LogEntry) })
	return e.b, e.err
}

// shared maps each message made by a Line's Shared to its Line, weakly:
// the entry goes when the Line is collected (once no subscriber's queue
// holds it), so the map never keeps a Line alive.
var shared sync.Map // message (any) → weak.Pointer[Line]

// Shared returns the line's API message for the stream RPCs: build's
// result for the first caller, the same message for every later one, so
// that each Connect subscriber sends one shared value. It must not be
// changed. A codec finds the Line again from the message (SharedLine)
// and keeps each encoding of it there (Encoded), so a thousand
// subscribers cost one encoding per codec.
func (l *Line) Shared(build func(store.LogEntry) any) any {
	l.sharedOnce.Do(func() {
		m := build(l.LogEntry)
		l.shared = m
		shared.Store(m, weak.Make(l))
		runtime.AddCleanup(l, func(m any) { shared.Delete(m) }, m)
	})
	return l.shared
}

// SharedLine returns the Line whose Shared message msg is, if it is one
// and the Line is still alive. msg must be comparable (a message is a
// pointer).
func SharedLine(msg any) (*Line, bool) {
	v, ok := shared.Load(msg)
	if !ok {
		return nil, false
	}
	l := v.(weak.Pointer[Line]).Value()
	return l, l != nil
}
