package cache

import (
	"bytes"
	"context"
	"sync"
)

// Decoded is a Cache whose values are used decoded: it keeps, beside the
// cache, the value it last decoded for each key together with the bytes it
// came from, and decodes again only when Get returns other bytes. A hit on
// a hot key then costs a comparison of the bytes rather than a decode (a
// workspace record's JSON decode was a third of a cached GetWorkspace).
//
// It changes nothing of the cache's coherence: every Get still asks the
// Cache for the key's bytes, with all its guarantees, and a decoded value
// is a function of its bytes alone, so serving the one decoded from equal
// bytes is serving what decoding them again would give.
type Decoded[T any] struct {
	cache  *Cache
	decode func([]byte) (T, error)

	mu   sync.Mutex
	max  int
	memo map[string]decodedValue[T]
}

// decodedValue is a key's last decoded value and the bytes it came from.
type decodedValue[T any] struct {
	raw []byte
	val T
}

// NewDecoded returns c's values decoded by decode. It keeps at most as
// many decoded values as c keeps entries (Options.MaxEntries).
func NewDecoded[T any](c *Cache, decode func([]byte) (T, error)) *Decoded[T] {
	return &Decoded[T]{cache: c, decode: decode, max: c.maxEntries, memo: make(map[string]decodedValue[T])}
}

// Get returns key's value decoded, as Cache.Get returns its bytes. The
// value may be shared with other callers: they must not modify it (copy
// it first).
func (d *Decoded[T]) Get(ctx context.Context, key string, load func(context.Context) ([]byte, error)) (T, error) {
	raw, err := d.cache.Get(ctx, key, load)
	if err != nil {
		var zero T
		return zero, err
	}
	d.mu.Lock()
	last, ok := d.memo[key]
	d.mu.Unlock()
	if ok && bytes.Equal(last.raw, raw) {
		return last.val, nil
	}
	val, err := d.decode(raw)
	if err != nil {
		return val, err
	}
	d.remember(key, decodedValue[T]{raw: raw, val: val})
	return val, nil
}

// remember keeps v as key's decoded value, forgetting an arbitrary other
// key's when the memo is full: a forgotten value costs one decode.
func (d *Decoded[T]) remember(key string, v decodedValue[T]) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.memo[key]; !ok && len(d.memo) >= d.max {
		for k := range d.memo {
			delete(d.memo, k)
			break
		}
	}
	d.memo[key] = v
}

// Cache returns the cache whose values d decodes, for its keys whose
// values are used as bytes.
func (d *Decoded[T]) Cache() *Cache { return d.cache }
