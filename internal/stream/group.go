package stream

import (
	"context"
	"sync"
)

// Group counts the streams a transport serves past their handlers' return
// (see Detach), which http.Server.Shutdown does not wait for: the server
// waits for them with Wait before it closes what they read. Unlike a
// sync.WaitGroup, a stream may join while Wait waits (a request being
// served when the shutdown began), and Wait takes a context. The zero
// Group is empty.
type Group struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero; nil while n is zero
}

// Add counts one more stream.
func (g *Group) Add() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		g.idle = make(chan struct{})
	}
	g.n++
}

// Done counts one stream ended.
func (g *Group) Done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 {
		close(g.idle)
		g.idle = nil
	}
}

// Wait returns once no stream is counted, or with ctx's error if ctx ends
// first.
func (g *Group) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		idle := g.idle
		g.mu.Unlock()
		if idle == nil {
			return nil
		}
		select {
		case <-idle:
			// A stream may have joined since; look again.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
