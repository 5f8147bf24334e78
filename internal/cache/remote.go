package cache

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	valkeygo "github.com/valkey-io/valkey-go"

	"github.com/berthhq/berth/internal/valkey"
)

// Valkey keys of the cache called <name>, in the client's namespace <ns>:
//
//	<ns>:cache:<name>:epoch            the epoch, incremented at each recovery
//	<ns>:cache:<name>:<epoch>:v:<key>  key's value
//	<ns>:cache:<name>:<epoch>:g:<key>  key's generation (a random token)
//
// The scripts build the value and generation keys from the epoch they read
// themselves, so they are atomic with respect to an epoch change; they
// therefore need a standalone server (or a single shard), which is what
// the valkey package connects to.

// generationScript returns key's generation, creating it with ARGV[1] if
// it has none. KEYS[1] is the generation key; ARGV[2] its TTL in ms.
var generationScript = valkeygo.NewLuaScript(`
local g = redis.call('GET', KEYS[1])
if g then return g end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// fillScript stores a loaded value if the key's generation is still the
// one read before loading. KEYS: generation, value; ARGV: generation,
// value, TTL in ms.
var fillScript = valkeygo.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1`)

// invalidateScript gives each key a new generation and deletes its value,
// in the current epoch. KEYS[1] is the epoch key; ARGV: the keys' prefix
// ("<ns>:cache:<name>:"), the new generation, its TTL in ms, then the keys.
var invalidateScript = valkeygo.NewLuaScript(`
local prefix = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0') .. ':'
for i = 4, #ARGV do
  redis.call('SET', prefix .. 'g:' .. ARGV[i], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', prefix .. 'v:' .. ARGV[i])
end
return #ARGV - 3`)

// epochTTL bounds how long an instance keeps the epoch without a round
// trip; it is invalidated like any cached key when it changes.
const epochTTL = time.Hour

// remote is the Valkey mode of a Cache.
type remote struct {
	vk       *valkey.Client
	prefix   string // "<ns>:cache:<name>:"
	epochKey string
	ttl      time.Duration
	genTTL   time.Duration
	timeout  time.Duration
	loads    flights
}

// newRemote returns the Valkey mode of the cache called name.
func newRemote(vk *valkey.Client, name string, ttl time.Duration) *remote {
	return &remote{
		vk:       vk,
		prefix:   vk.Key("cache", name) + ":",
		epochKey: vk.Key("cache", name, "epoch"),
		ttl:      ttl,
		// Longer than any load: a generation that expired while a load
		// ran only costs that load's store.
		genTTL:  ttl + time.Minute,
		timeout: 500 * time.Millisecond,
	}
}

// get is Cache.Get with Valkey Up.
func (r *remote) get(ctx context.Context, key string, load func(context.Context) ([]byte, error), count func(hit, client bool)) ([]byte, error) {
	vk := r.vk.Valkey()
	opctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	bypass := func(err error) ([]byte, error) {
		r.vk.ReportFailure(ctx, err)
		count(false, false)
		return load(ctx)
	}

	// The lease first: local copies may be served only while it holds.
	if err := r.vk.Sync(opctx); err != nil {
		count(false, false)
		return load(ctx)
	}
	epoch, err := r.epoch(opctx)
	if err != nil {
		return bypass(err)
	}
	keys := r.prefix + epoch + ":"
	res := vk.DoCache(opctx, vk.B().Get().Key(keys+"v:"+key).Cache(), r.ttl)
	switch v, err := res.AsBytes(); {
	case err == nil:
		count(true, res.IsCacheHit())
		return v, nil
	case !valkeygo.IsValkeyNil(err):
		return bypass(err)
	}

	// A miss: read the generation before loading, store only if it did
	// not change (see the package doc).
	gen, err := generationScript.Exec(opctx, vk, []string{keys + "g:" + key}, []string{newToken(), ms(r.genTTL)}).ToString()
	if err != nil {
		return bypass(err)
	}
	count(false, false)
	// Gets on this instance that read the same generation share one load.
	id := keys + "g:" + key + "@" + gen
	f, lead := r.loads.join(id)
	if !lead {
		v, ok, err := f.wait(ctx)
		if !ok {
			return load(ctx)
		}
		return v, err
	}
	v, err := load(ctx)
	defer r.loads.done(id, f, v, err)
	if err != nil {
		return nil, err
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer scancel()
	if err := fillScript.Exec(sctx, vk, []string{keys + "g:" + key, keys + "v:" + key}, []string{gen, string(v), ms(r.ttl)}).Error(); err != nil {
		r.vk.ReportFailure(context.Background(), err)
	}
	return v, nil
}

// epoch returns the cache's current epoch ("0" before the first flush).
func (r *remote) epoch(ctx context.Context) (string, error) {
	vk := r.vk.Valkey()
	e, err := vk.DoCache(ctx, vk.B().Get().Key(r.epochKey).Cache(), epochTTL).ToString()
	if valkeygo.IsValkeyNil(err) {
		return "0", nil
	}
	return e, err
}

// invalidate gives keys new generations and deletes their values.
// timeout bounds the attempt.
func (r *remote) invalidate(ctx context.Context, keys []string, timeout time.Duration) error {
	opctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append([]string{r.prefix, newToken(), ms(r.genTTL)}, keys...)
	err := invalidateScript.Exec(opctx, r.vk.Valkey(), []string{r.epochKey}, args).Error()
	r.vk.ReportFailure(ctx, err)
	return err
}

// flush abandons every entry by moving to a new epoch, and settles, so
// that no instance serves an entry of the old epoch after it returns. It
// is the client's recovery hook.
func (r *remote) flush(ctx context.Context) error {
	vk := r.vk.Valkey()
	if err := vk.Do(ctx, vk.B().Incr().Key(r.epochKey).Build()).Error(); err != nil {
		return err
	}
	r.vk.Settle()
	return nil
}

// newToken returns a random generation token.
// #nosec G404 -- a lease token tells this process's own entries apart; it guards nothing
func newToken() string { return strconv.FormatUint(rand.Uint64(), 36) }

// ms formats d in whole milliseconds, at least 1.
func ms(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }
