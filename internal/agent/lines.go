package agent

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"unicode/utf8"
)

// MaxLineBytes is the longest line Lines hands over in one piece. The CLI
// prints a whole tool result (a file it read, a command's output) on one
// stream-json line, so lines of several MiB are normal; a longer line is
// handed over in pieces of at most MaxLineBytes, cut on a UTF-8 boundary.
// Such a piece is not valid JSON, so the Parser logs it as stdout: nothing
// is dropped silently and memory stays bounded.
const MaxLineBytes = 8 << 20

// Lines reads r line by line and calls fn with each line, without its
// trailing "\n" or "\r\n". The slice is only valid during the call. A last
// line without a newline is handed over too. Lines returns the first read
// error other than io.EOF.
func Lines(r io.Reader, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte // a line longer than the reader's buffer, so far
	for {
		chunk, err := br.ReadSlice('\n')
		if err == nil && len(buf) == 0 {
			fn(trimEOL(chunk)) // the common case: no copy
			continue
		}
		buf = append(buf, chunk...)
		if err == nil {
			emitPieces(trimEOL(buf), fn)
			buf = buf[:0]
			if cap(buf) > 1<<20 {
				buf = nil // do not hold a huge buffer for the rest of the run
			}
			continue
		}
		// Incomplete line: hand over what can no longer grow into one piece.
		for len(buf) > MaxLineBytes {
			cut := runeCut(buf, MaxLineBytes)
			fn(buf[:cut])
			buf = append(buf[:0], buf[cut:]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(buf) > 0 {
			emitPieces(trimEOL(buf), fn)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
}

// emitPieces hands line over in pieces of at most MaxLineBytes.
func emitPieces(line []byte, fn func([]byte)) {
	for len(line) > MaxLineBytes {
		cut := runeCut(line, MaxLineBytes)
		fn(line[:cut])
		line = line[cut:]
	}
	fn(line)
}

// runeCut returns where to cut b at most n bytes in without splitting a
// UTF-8 sequence (when b is UTF-8 at all). len(b) must exceed n.
func runeCut(b []byte, n int) int {
	for i := 0; i < utf8.UTFMax && n-i > 0; i++ {
		if utf8.RuneStart(b[n-i]) {
			return n - i
		}
	}
	return n
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}
