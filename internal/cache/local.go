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
// A miss leaves a pending entry carrying a new token while the loader
// runs; the loaded value is stored only if that entry is still there with
// that token. Invalidate removes the entry, so a value loaded before an
// invalidation (possibly older than the write) is never stored after it.
type lru struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *entry, most recently used first
	entries map[string]*list.Element
	tokens  uint64
}

// entry is one key's value, or its pending load.
type entry struct {
	key     string
	val     []byte
	expires time.Time
	token   uint64 // non-zero while a load is pending
}

// newLRU returns an empty lru holding at most max entries.
func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), entries: make(map[string]*list.Element)}
}

// get returns key's value, loading and storing it on a miss, and reports
// the outcome to count.
func (l *lru) get(ctx context.Context, key string, ttl time.Duration, load func(context.Context) ([]byte, error), count func(hit, client bool)) ([]byte, error) {
	now := time.Now()
	l.mu.Lock()
	if el, ok := l.entries[key]; ok {
		e := el.Value.(*entry)
		if e.token == 0 && now.Before(e.expires) {
			l.order.MoveToFront(el)
			l.mu.Unlock()
			count(true, true)
			return e.val, nil
		}
	}
	l.tokens++
	token := l.tokens
	l.put(&entry{key: key, token: token})
	l.mu.Unlock()

	count(false, false)
	v, err := load(ctx)

	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[key]
	if !ok || el.Value.(*entry).token != token {
		return v, err // invalidated, evicted or reloaded meanwhile
	}
	if err != nil {
		l.remove(el)
		return nil, err
	}
	e := el.Value.(*entry)
	e.val, e.expires, e.token = v, time.Now().Add(ttl), 0
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
