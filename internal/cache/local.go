package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// lru is the in-process cache: at most max entries, the least recently
// used evicted first, each valid until its expiry.
//
// A miss leaves a pending entry carrying its load (a flight) while the
// loader runs; the loaded value is stored only if that entry is still there
// with that flight. Invalidate removes the entry, so a value loaded before
// an invalidation (possibly older than the write) is never stored after it.
// Gets of the key while the entry is pending wait for its flight instead of
// loading again; a Get that begins after an Invalidate finds no entry and
// loads anew, so it never receives a value loaded before the write.
type lru struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	order   *list.List // of *entry, most recently used first
	entries map[string]*list.Element
}

// entry is one key's value, or its pending load.
type entry struct {
	key     string
	val     []byte
	expires time.Time
	load    *flight // non-nil while a load is pending
}

// newLRU returns an empty lru holding at most max entries, whose entries
// expire by the clock now.
func newLRU(max int, now func() time.Time) *lru {
	return &lru{max: max, now: now, order: list.New(), entries: make(map[string]*list.Element)}
}

// get returns key's value, loading and storing it on a miss, and reports
// the outcome to count.
func (l *lru) get(ctx context.Context, key string, ttl time.Duration, load func(context.Context) ([]byte, error), count func(hit, client bool)) ([]byte, error) {
	l.mu.Lock()
	if el, ok := l.entries[key]; ok {
		e := el.Value.(*entry)
		if pending := e.load; pending != nil {
			l.mu.Unlock()
			count(false, false)
			v, ok, err := pending.wait(ctx)
			if !ok {
				return l.get(ctx, key, ttl, load, count)
			}
			return v, err
		}
		if l.now().Before(e.expires) {
			l.order.MoveToFront(el)
			l.mu.Unlock()
			count(true, true)
			return e.val, nil
		}
	}
	f := newFlight()
	l.put(&entry{key: key, load: f})
	l.mu.Unlock()

	count(false, false)
	v, err := load(ctx)
	defer f.finish(v, err)

	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[key]
	if !ok || el.Value.(*entry).load != f {
		return v, err // invalidated, evicted or reloaded meanwhile
	}
	if err != nil {
		l.remove(el)
		return nil, err
	}
	e := el.Value.(*entry)
	e.val, e.expires, e.load = v, l.now().Add(ttl), nil
	return v, nil
}

// put stores e as the most recently used entry, replacing key's, and
// evicts beyond max. l.mu must be held.
func (l *lru) put(e *entry) {
	if el, ok := l.entries[e.key]; ok {
		el.Value = e
		l.order.MoveToFront(el)
		return
	}
	l.entries[e.key] = l.order.PushFront(e)
	for l.order.Len() > l.max {
		l.remove(l.order.Back())
	}
}

// remove deletes el. l.mu must be held.
func (l *lru) remove(el *list.Element) {
	l.order.Remove(el)
	delete(l.entries, el.Value.(*entry).key)
}

// invalidate removes keys, and their pending loads.
func (l *lru) invalidate(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if el, ok := l.entries[k]; ok {
			l.remove(el)
		}
	}
}
