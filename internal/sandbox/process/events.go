package process

import (
	"context"
	"time"

	"github.com/berthhq/berth/internal/sandbox"
)

type subscriber struct {
	out  chan sandbox.Event
	errc chan error
}

// Events streams the state changes Create, Start, Stop and Remove make:
// created, running, stopped, missing. The subscription is in place when
// Events returns. The stream ends when ctx ends — the event channel is
// closed, and then the error channel, empty — or when the reader falls
// more than a few dozen events behind: then the error channel holds
// ErrLagged; call Events again and List to catch up.
func (r *Runtime) Events(ctx context.Context) (<-chan sandbox.Event, <-chan error) {
	s := &subscriber{out: make(chan sandbox.Event, eventBuffer), errc: make(chan error, 1)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.subs[s]; ok {
			r.unsubscribe(s, nil)
		}
	}()
	return s.out, s.errc
}

// publish hands an event to every subscriber without waiting: one that has
// no room left is dropped with ErrLagged. r.mu must be held.
func (r *Runtime) publish(id, workspaceID string, state sandbox.State) {
	ev := sandbox.Event{ContainerID: id, WorkspaceID: workspaceID, State: state, Time: time.Now()}
	for s := range r.subs {
		select {
		case s.out <- ev:
		default:
			r.unsubscribe(s, ErrLagged)
		}
	}
}

// unsubscribe ends a subscription; r.mu must be held.
func (r *Runtime) unsubscribe(s *subscriber, err error) {
	delete(r.subs, s)
	if err != nil {
		s.errc <- err
	}
	close(s.out)
	close(s.errc)
}
