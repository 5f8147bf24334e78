package ratelimit

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// SetHeaders sets the rate-limit headers of an HTTP response from d:
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds until
// the budget is full, rounded up), and, when d refused the request,
// Retry-After (seconds, rounded up, at least 1). A class that is not
// limited (Limit 0) sets none.
func SetHeaders(h http.Header, d Decision) {
	if d.Limit == 0 {
		return
	}
	h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
	h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(d.Reset), 10))
	if !d.Allowed {
		h.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10))
	}
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}
