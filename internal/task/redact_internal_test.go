package task

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

// TestRedactor: the API key is replaced in every form a program can
// print it in, and nothing else changes.
func TestRedactor(t *testing.T) {
	t.Parallel()
	// '+', '/' and '=' in base64 and '%' in URL escapes need a key whose
	// bytes give them: "?>" base64-encodes to "Pz4=", and "~?" to "fj8/".
	key := "sk-ant-api03-AbC_12~?>x+y/z="
	redact := redactor(key)
	b := []byte(key)
	for name, form := range map[string]string{
		"plain":         key,
		"base64":        base64.StdEncoding.EncodeToString(b),
		"base64-raw":    base64.RawStdEncoding.EncodeToString(b),
		"base64url":     base64.URLEncoding.EncodeToString(b),
		"base64url-raw": base64.RawURLEncoding.EncodeToString(b),
		"hex":           hex.EncodeToString(b),
		"HEX":           strings.ToUpper(hex.EncodeToString(b)),
		"query":         url.QueryEscape(key),
		"path":          url.PathEscape(key),
	} {
		in := "before " + form + " after\n" + form
		got := redact(in)
		if strings.Contains(got, form) || got != "before [REDACTED] after\n[REDACTED]" {
			t.Errorf("%s (%s): got %q", name, form, got)
		}
	}
	for _, s := range []string{"", "nothing secret here", "sk-ant-api03", base64.StdEncoding.EncodeToString([]byte("other"))} {
		if got := redact(s); got != s {
			t.Errorf("redact(%q) = %q", s, got)
		}
	}
	if got := redactor("")("sk-ant"); got != "sk-ant" {
		t.Errorf("empty secret: %q", got)
	}
}

// TestRedactingWriter: a key split across writes, and one at the end of
// an unterminated line, is still redacted.
func TestRedactingWriter(t *testing.T) {
	t.Parallel()
	key := "sk-ant-api03-0123456789abcdef"
	var out bytes.Buffer
	w := newRedactingWriter(&out, key)
	for _, part := range []string{"error: key sk-ant-", "api03-0123456789", "abcdef rejected\nhex ", hex.EncodeToString([]byte(key))} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "error: key [REDACTED] rejected\nhex [REDACTED]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A line that never ends is passed on in pieces, the key still whole.
	for _, at := range []int{0, maxRedactLine - 10, maxRedactLine - 3*len(key), maxRedactLine + 50} {
		out.Reset()
		w = newRedactingWriter(&out, key)
		long := strings.Repeat("x", at) + key + strings.Repeat("y", 3*maxRedactLine)
		for i := 0; i < len(long); i += 7 {
			_, _ = w.Write([]byte(long[i:min(i+7, len(long))]))
		}
		_ = w.Close()
		if strings.Contains(out.String(), key) || strings.Count(out.String(), redacted) != 1 || out.Len() != len(long)-len(key)+len(redacted) {
			t.Errorf("key at %d of a long line: %d bytes, key present %v", at, out.Len(), strings.Contains(out.String(), key))
		}
	}
}
