package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Times are stored as microseconds since the Unix epoch, UTC: an integer both
// engines compare and index the same way.

// micros returns t as stored.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros returns a stored time.
func fromMicros(n int64) time.Time { return time.UnixMicro(n).UTC() }

// storedTime returns t as a read gives it back: UTC, to the microsecond.
// Creates write it back into the caller's record, so the record it holds is
// the one a later read returns.
func storedTime(t time.Time) time.Time { return fromMicros(micros(t)) }

// storedTimePtr is storedTime for an optional time.
func storedTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := storedTime(*t)
	return &v
}

// nullMicros returns an optional time as stored: NULL when absent.
func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(*t), Valid: true}
}

// timePtr reads an optional stored time.
func timePtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMicros(n.Int64)
	return &t
}

// boolInt returns a boolean as stored: INTEGER 0 or 1.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// nullString returns s as stored in a nullable column: NULL when empty.
func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// encodeTags returns tags as stored: a JSON array, [] when there are none.
func encodeTags(tags []string) (string, error) {
	if len(tags) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return "", fmt.Errorf("encode tags: %w", err)
	}
	return string(b), nil
}

// decodeTags reads stored tags; the result is never nil.
func decodeTags(s string) ([]string, error) {
	tags := []string{}
	if s == "" || s == "null" {
		return tags, nil
	}
	if err := json.Unmarshal([]byte(s), &tags); err != nil {
		return nil, fmt.Errorf("decode tags: %w", err)
	}
	if tags == nil {
		tags = []string{}
	}
	return tags, nil
}

// encodeMetadata returns metadata as stored: a JSON object, {} when empty.
func encodeMetadata(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	return string(b), nil
}

// decodeMetadata reads stored metadata; the result is never nil.
func decodeMetadata(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" || s == "null" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	if m == nil {
		m = map[string]string{}
	}
	return m, nil
}

// nullJSON returns a JSON document as stored: TEXT, or NULL when absent.
func nullJSON(doc json.RawMessage) (sql.NullString, error) {
	if len(doc) == 0 {
		return sql.NullString{}, nil
	}
	if !json.Valid(doc) {
		return sql.NullString{}, fmt.Errorf("encode JSON document: not valid JSON")
	}
	return sql.NullString{String: string(doc), Valid: true}, nil
}

// likeContains returns a LIKE pattern, to be used with ESCAPE '\', that
// matches term anywhere in a string: the wildcards % and _ and the escape
// character itself in term match only literally.
func likeContains(term string) string {
	var b strings.Builder
	b.Grow(len(term) + 4)
	b.WriteByte('%')
	for _, r := range term {
		if r == '%' || r == '_' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('%')
	return b.String()
}

// foldASCII lower-cases the ASCII letters of s and leaves every other
// character as it is: what lower() does to berth's columns on both engines
// (SQLite's built-in lower(), and Postgres's on columns that are COLLATE
// "C"), so that a search folds case by one rule everywhere.
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// placeholders returns n comma-separated ? placeholders, for an IN list.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// nullBytes returns a hash as stored in a nullable column: NULL when empty.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// rawJSON reads a stored JSON document: nil when NULL.
func rawJSON(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}
