package task

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/url"
	"slices"
	"strings"
)

// redacted replaces a secret wherever it shows.
const redacted = "[REDACTED]"

// redactor returns a function that replaces secret in a string, in every
// form a program is likely to print it: as is, in standard and URL-safe
// base64 (padded and raw), in lower- and upper-case hex, and escaped for a
// URL query or path. The claude CLI, or an agent told to, can print the
// operator's API key in any of them; matching only the plain text would
// let "base64 it first" walk the key out through the task's log. A secret
// embedded in a larger encoded blob (base64 of "user:key") is not found:
// its encoding depends on what precedes it.
//
// An empty secret gives the identity.
func redactor(secret string) func(string) string {
	if secret == "" {
		return func(s string) string { return s }
	}
	b := []byte(secret)
	forms := []string{
		secret,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		url.QueryEscape(secret),
		url.PathEscape(secret),
	}
	// Longest first: strings.Replacer tries its pairs in order at each
	// position, and a padded form must win over its raw prefix.
	slices.SortStableFunc(forms, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	forms = slices.Compact(forms)
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, redacted)
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// maxRedactLine bounds the partial line a redactingWriter holds.
const maxRedactLine = 64 << 10

// redactingWriter passes output on line by line, each line redacted, so
// that a secret split across two writes is still found. It is for the
// claude CLI's stderr, which goes to the task log as it is written.
type redactingWriter struct {
	w       io.Writer
	redact  func(string) string
	keep    int // bytes held back from an over-long line: more than the longest form of the secret
	partial []byte
}

// newRedactingWriter redacts secret (see redactor) from what it passes to w.
func newRedactingWriter(w io.Writer, secret string) *redactingWriter {
	// The longest form is the URL escape: 3 bytes for each of the secret's.
	return &redactingWriter{w: w, redact: redactor(secret), keep: 3*len(secret) + 1}
}

func (rw *redactingWriter) Write(p []byte) (int, error) {
	held := len(rw.partial)
	rw.partial = append(rw.partial, p...)
	// Only p can hold a new end of line: no rescanning what was held.
	if j := bytes.LastIndexByte(p, '\n'); j >= 0 {
		i := held + j
		if _, err := io.WriteString(rw.w, rw.redact(string(rw.partial[:i+1]))); err != nil {
			return 0, err
		}
		rw.partial = append(rw.partial[:0], rw.partial[i+1:]...)
	}
	if len(rw.partial) > maxRedactLine {
		// A line that never ends: redact it, and pass on all but a tail
		// longer than any form of the secret. A secret cut off at the end
		// is not redacted yet, and is whole in the tail, which waits for
		// the rest of it.
		s := rw.redact(string(rw.partial))
		n := len(s) - rw.keep
		if _, err := io.WriteString(rw.w, s[:n]); err != nil {
			return 0, err
		}
		rw.partial = append(rw.partial[:0], s[n:]...)
	}
	return len(p), nil
}

// Close passes on the last partial line and closes the underlying writer
// if it is a Closer.
func (rw *redactingWriter) Close() error {
	var werr error
	if len(rw.partial) > 0 {
		_, werr = io.WriteString(rw.w, rw.redact(string(rw.partial)))
		rw.partial = nil
	}
	if c, ok := rw.w.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return err
		}
	}
	return werr
}
