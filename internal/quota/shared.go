package quota

import (
	"context"
	"strconv"
	"time"

	valkeygo "github.com/valkey-io/valkey-go"
)

// takeScript drops the expired members of a principal's set, and adds
// ARGV[3] expiring ARGV[2] ms from now when fewer than ARGV[1] remain. It
// returns 1 when it added the member, 0 when the cap is reached. The clock
// is the server's, so instances whose clocks disagree agree on expiry.
var takeScript = valkeygo.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1`)

// renewScript pushes the expiry of the members ARGV[2..] of KEYS[1] that
// still exist to ARGV[1] ms from now.
var renewScript = valkeygo.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 0`)

// sharedKey is the Valkey key of a principal's set.
func (s *Streams) sharedKey(key string) string { return s.opts.Valkey.Key("streams", key) }

// takeShared asks Valkey for a slot for key.
func (s *Streams) takeShared(ctx context.Context, key, member string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := takeScript.Exec(ctx, s.opts.Valkey.Valkey(), []string{s.sharedKey(key)},
		[]string{strconv.FormatInt(s.opts.PerPrincipal, 10), strconv.FormatInt(s.opts.TTL.Milliseconds(), 10), member}).AsInt64()
	return n == 1, err
}

// renew keeps this instance's shared slots alive until Close.
func (s *Streams) renew() {
	defer close(s.done)
	tick := time.NewTicker(s.opts.TTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		if !s.opts.Valkey.Up() {
			continue
		}
		s.mu.Lock()
		batch := map[string][]string{}
		for key, m := range s.held {
			for member, shared := range m {
				if shared {
					batch[key] = append(batch[key], member)
				}
			}
		}
		s.mu.Unlock()
		ttl := strconv.FormatInt(s.opts.TTL.Milliseconds(), 10)
		for key, members := range batch {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := renewScript.Exec(ctx, s.opts.Valkey.Valkey(), []string{s.sharedKey(key)}, append([]string{ttl}, members...)).Error()
			cancel()
			if err != nil {
				s.opts.Valkey.ReportFailure(context.Background(), err)
				s.opts.Logger.Warn("renewing stream slots in valkey failed", "error", err.Error())
				break
			}
		}
	}
}
