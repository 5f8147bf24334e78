package event

import (
	"sync"

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
