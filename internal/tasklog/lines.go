package tasklog

import (
	"bytes"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/store"
)

// Stdout returns a writer whose output becomes entries of source stdout,
// level info, one per line (see Options.MaxLine for long lines). A last
// line without a newline is kept until its newline comes or Close.
func (w *Writer) Stdout() io.Writer { return w.lineWriter(store.LogStdout) }

// Stderr is Stdout for source stderr. Its lines are level info too: tools
// such as git and docker write progress, not only errors, to stderr.
func (w *Writer) Stderr() io.Writer { return w.lineWriter(store.LogStderr) }

func (w *Writer) lineWriter(source string) io.Writer {
	lw := &lineWriter{w: w, source: source}
	w.mu.Lock()
	w.lines = append(w.lines, lw)
	w.mu.Unlock()
	return lw
}

// lineWriter splits written bytes into lines, each an entry of its source.
type lineWriter struct {
	w      *Writer
	source string

	mu      sync.Mutex
	partial []byte
}

// Write logs every complete line of p and keeps the rest. It never fails.
func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			lw.partial = append(lw.partial, p...)
			break
		}
		line := p[:i]
		if len(lw.partial) > 0 {
			line = append(lw.partial, line...)
			lw.partial = lw.partial[:0]
		}
		lw.w.Log(store.LogInfo, lw.source, string(line), nil)
		p = p[i+1:]
	}
	// A line that outgrows MaxLine is logged in MaxLine pieces already, as
	// Log would split it, cut where a UTF-8 character may begin.
	for len(lw.partial) > lw.w.opts.MaxLine+utf8.UTFMax {
		k := lw.w.opts.MaxLine
		for k > 0 && !utf8.RuneStart(lw.partial[k]) {
			k--
		}
		if k == 0 {
			k = lw.w.opts.MaxLine
		}
		lw.w.Log(store.LogInfo, lw.source, string(lw.partial[:k]), nil)
		lw.partial = append(lw.partial[:0], lw.partial[k:]...)
	}
	return n, nil
}

// close logs the partial last line, if any.
func (lw *lineWriter) close() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if len(lw.partial) > 0 {
		lw.w.Log(store.LogInfo, lw.source, string(lw.partial), nil)
		lw.partial = nil
	}
}
