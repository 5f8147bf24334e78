package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// local keeps budgets in this process: a golang.org/x/time/rate limiter per
// class and key, at most max of them, the least recently used forgotten
// first. A key idle long enough to be forgotten has a full budget anyway,
// unless the map is under pressure from more active keys than max.
type local struct {
	mu    sync.Mutex
	max   int
	now   func() time.Time
	order *list.List // of *bucket, most recently used first
	byKey map[string]*list.Element
}

// bucket is one key's limiter.
type bucket struct {
	key string
	lim *rate.Limiter
}

// newLocal returns an empty local holding at most max budgets.
func newLocal(max int, now func() time.Time) *local {
	return &local{max: max, now: now, order: list.New(), byKey: make(map[string]*list.Element)}
}

// decide is Limiter.decide on the local budget of key in class.
func (l *local) decide(class, key string, c Class, take bool) Decision {
	now := l.now()
	lim := l.limiter(class+"\x00"+key, c)
	var allowed bool
	if take {
		allowed = lim.AllowN(now, 1)
	} else {
		allowed = lim.TokensAt(now) >= 1
	}
	tokens := lim.TokensAt(now)
	d := Decision{
		Allowed:   allowed,
		Limit:     c.Burst,
		Remaining: int(math.Floor(max(tokens, 0) + 1e-9)),
		Reset:     seconds((float64(c.Burst) - tokens) / c.Rate),
	}
	if !allowed {
		d.Remaining = 0
		d.RetryAfter = seconds((1 - tokens) / c.Rate)
	}
	return d
}

// limiter returns key's limiter, creating it with a full budget.
func (l *local) limiter(key string, c Class) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byKey[key]; ok {
		l.order.MoveToFront(el)
		return el.Value.(*bucket).lim
	}
	b := &bucket{key: key, lim: rate.NewLimiter(rate.Limit(c.Rate), c.Burst)}
	l.byKey[key] = l.order.PushFront(b)
	for l.order.Len() > l.max {
		el := l.order.Back()
		l.order.Remove(el)
		delete(l.byKey, el.Value.(*bucket).key)
	}
	return b.lim
}

// seconds converts s seconds to a Duration, rounded up to the microsecond.
func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(s*1e6)) * time.Microsecond
}
