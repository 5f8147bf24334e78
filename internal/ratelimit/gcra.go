package ratelimit

import (
	"context"
	"errors"
	"strconv"
	"time"

	valkeygo "github.com/valkey-io/valkey-go"
)

// gcraScript is GCRA on the server's clock. A key holds its theoretical
// arrival time (TAT), in microseconds: the time at which its budget would
// be full again. A request is allowed when, counted, the TAT stays within
// burst emission intervals of now.
//
// KEYS[1] is the key; ARGV: the emission interval (1/rate) in µs, the
// burst, and 1 to count the request or 0 to peek. It returns {allowed,
// remaining, reset in µs, retry after in µs}.
var gcraScript = valkeygo.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local next = tat + interval
if next - now > tolerance + 0.5 then
  return {0, 0, math.ceil(tat - now), math.ceil(next - tolerance - now)}
end
if ARGV[3] == '0' then
  return {1, math.floor((tolerance - (tat - now)) / interval + 1e-9), math.ceil(tat - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000))
return {1, math.floor((tolerance - (next - now)) / interval + 1e-9), math.ceil(next - now), 0}`)

// gcra decides in Valkey.
func (l *Limiter) gcra(ctx context.Context, class, key string, c Class, take bool) (Decision, error) {
	vk := l.vk.Valkey()
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	interval := strconv.FormatFloat(1e6/c.Rate, 'g', -1, 64)
	mode := "0"
	if take {
		mode = "1"
	}
	r, err := gcraScript.Exec(ctx, vk, []string{l.vk.Key("rl", class, key)}, []string{interval, strconv.Itoa(c.Burst), mode}).AsIntSlice()
	if err != nil {
		return Decision{}, err
	}
	if len(r) != 4 {
		return Decision{}, errBadReply
	}
	return Decision{
		Allowed:    r[0] == 1,
		Limit:      c.Burst,
		Remaining:  int(max(r[1], 0)),
		Reset:      time.Duration(r[2]) * time.Microsecond,
		RetryAfter: time.Duration(r[3]) * time.Microsecond,
	}, nil
}

// errBadReply is gcra's error for a script reply of the wrong shape.
var errBadReply = errors.New("ratelimit: unexpected reply from the GCRA script")
