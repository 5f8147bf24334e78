package stream

import (
	"context"
	"net/http"
)

// detachKey is the context key of a request's detacher (WithDetach).
type detachKey struct{}

// WithDetach returns ctx carrying detach, which Detach calls: the server's
// request middleware puts it there, so that a handler that keeps serving
// its connection after it returns (a hijacked event stream, a WebSocket)
// can have the request's access log and metrics completed when its stream
// ends rather than when the handler returns. detach marks the request r
// detached and returns what completes it.
func WithDetach(ctx context.Context, detach func(r *http.Request) (finish func())) context.Context {
	return context.WithValue(ctx, detachKey{}, detach)
}

// Detach tells the middleware of request r that its handler returns
// before its stream ends. It must be called on the handler's goroutine,
// before the handler returns, and the handler must not use its
// ResponseWriter after it returns. The request is then completed by
// finish, which the stream calls once when it ends; finish holds nothing
// of r. Without such a middleware, finish does nothing.
func Detach(r *http.Request) (finish func()) {
	if detach, ok := r.Context().Value(detachKey{}).(func(*http.Request) func()); ok {
		return detach(r)
	}
	return func() {}
}
