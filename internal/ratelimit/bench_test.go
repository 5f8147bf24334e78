package ratelimit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/berthhq/berth/internal/ratelimit"
	"github.com/berthhq/berth/internal/testsvc"
)

// BenchmarkAllow measures one decision over 1,000 keys: in process, and in
// Valkey (one script call, a round trip).
func BenchmarkAllow(b *testing.B) {
	r := testsvc.StartRedis(b)
	classes := map[string]ratelimit.Class{"c": {Rate: 1e6, Burst: 1000}}
	for _, mode := range []string{"local", "valkey"} {
		b.Run(mode, func(b *testing.B) {
			opts := ratelimit.Options{}
			if mode == "valkey" {
				opts.Valkey = openValkey(b, r.URL())
			}
			l := ratelimit.New(classes, opts)
			ctx := context.Background()
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = strconv.Itoa(i)
			}
			i := 0
			for b.Loop() {
				if _, err := l.Allow(ctx, "c", keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if mode == "valkey" && !opts.Valkey.Up() {
				b.Fatal("Valkey went Degraded during the benchmark")
			}
		})
	}
}
