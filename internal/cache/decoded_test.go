package cache_test

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// TestDecoded checks, in process and in Valkey, that a Decoded cache
// decodes a key's bytes once while they stay the same, serves the new
// value at once after an Invalidate, and keeps serving correct values
// when more keys are read than it remembers.
func TestDecoded(t *testing.T) {
	t.Parallel()
	url := testsvc.StartRedis(t).URL()
	for _, mode := range []string{"local", "valkey"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var vk *valkey.Client
			if mode == "valkey" {
				vk = openValkey(t, url)
			}
			d := newDB()
			c := newCache(t, "decoded", vk, cache.Options{MaxEntries: 2})
			var decodes atomic.Int64
			dec := cache.NewDecoded(c, func(b []byte) (int, error) {
				decodes.Add(1)
				return strconv.Atoi(string(b))
			})
			read := func(key string) int {
				t.Helper()
				v, err := dec.Get(t.Context(), key, d.loader(key))
				if err != nil {
					t.Fatalf("Get %s: %v", key, err)
				}
				return v
			}
			d.set("a", 1)
			for range 5 {
				if got := read("a"); got != 1 {
					t.Fatalf("a = %d, want 1", got)
				}
			}
			if n := decodes.Load(); n != 1 {
				t.Errorf("5 reads of unchanged bytes decoded %d times, want 1", n)
			}
			d.set("a", 2)
			c.Invalidate(t.Context(), "a")
			if got := read("a"); got != 2 {
				t.Fatalf("a after Invalidate = %d, want 2", got)
			}
			// More keys than remembered: each still reads its own value.
			for i := range 10 {
				key := "k" + strconv.Itoa(i)
				d.set(key, i)
				if got := read(key); got != i {
					t.Fatalf("%s = %d, want %d", key, got, i)
				}
			}
			for i := range 10 {
				key := "k" + strconv.Itoa(i)
				if got := read(key); got != i {
					t.Fatalf("%s read again = %d, want %d", key, got, i)
				}
			}
		})
	}
}

// TestDecodedError checks that a decode failure is returned and nothing
// is remembered.
func TestDecodedError(t *testing.T) {
	t.Parallel()
	d := newDB()
	c := newCache(t, "decoded", nil, cache.Options{})
	dec := cache.NewDecoded(c, func(b []byte) (int, error) { return strconv.Atoi(string(b) + "x") })
	for range 2 {
		if _, err := dec.Get(t.Context(), "a", d.loader("a")); err == nil {
			t.Fatal("a bad value decoded without error")
		}
	}
}
