package store

import (
	"context"
	"strings"
	"sync"
)

// writeWatch calls a function after every committed write to a set of
// tables (see OnWrite).
type writeWatch struct {
	tables []string
	fn     func(context.Context)
	seen   sync.Map // query text → bool: does it write a watched table?
}

// OnWrite makes the store call fn after every write to one of tables has
// committed — once per transaction, before the method that wrote returns —
// so that caches of what those tables hold can be invalidated before the
// caller learns its write is done. Call it before the store is used by
// more than one goroutine: the watch is not synchronised.
func (s *Store) OnWrite(tables []string, fn func(ctx context.Context)) {
	s.watch = &writeWatch{tables: tables, fn: fn}
}

// touches reports whether query writes one of the watched tables.
func (w *writeWatch) touches(query string) bool {
	if v, ok := w.seen.Load(query); ok {
		return v.(bool)
	}
	q := strings.ToLower(strings.Join(strings.Fields(query), " "))
	hit := false
	for _, t := range w.tables {
		for _, verb := range []string{"insert into ", "update ", "delete from "} {
			for rest := q; !hit; {
				i := strings.Index(rest, verb+t)
				if i < 0 {
					break
				}
				next := i + len(verb) + len(t)
				hit = next == len(rest) || !identChar(rest[next])
				rest = rest[next:]
			}
		}
	}
	w.seen.Store(query, hit)
	return hit
}

func identChar(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
}

// wrote records that query ran on c: inside a transaction it marks the
// transaction (runTx reports it after the commit); outside one the write
// has committed already, and is reported at once.
func (c conn) wrote(ctx context.Context, query string) {
	w := c.s.watch
	if w == nil || !w.touches(query) {
		return
	}
	if c.touched != nil {
		*c.touched = true
		return
	}
	w.fn(context.WithoutCancel(ctx))
}
