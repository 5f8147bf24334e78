package stream

import "net/http"

// Detacher is what Detach asks to detach a request: the server's request
// middleware gives every request's context one, under DetachKey, so that
// a handler that keeps serving its connection after it returns (a
// hijacked event stream, a WebSocket) can have the request's access log
// and metrics completed when its stream ends rather than when the handler
// returns.
type Detacher interface {
	// Detach marks the request r detached and returns what completes it.
	Detach(r *http.Request) (finish func())
}

// DetachKey is the context key of a request's Detacher: a context's Value
// for it is one (the middleware's context answers it from the request's
// own state, without a context layer of its own).
type DetachKey struct{}

// Detach tells the middleware of request r that its handler returns
// before its stream ends. It must be called on the handler's goroutine,
// before the handler returns, and the handler must not use its
// ResponseWriter after it returns. The request is then completed by
// finish, which the stream calls once when it ends; finish holds nothing
// of r. Without such a middleware, finish does nothing.
func Detach(r *http.Request) (finish func()) {
	if d, ok := r.Context().Value(DetachKey{}).(Detacher); ok {
		return d.Detach(r)
	}
	return func() {}
}
