package docker

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/berthhq/berth/internal/sandbox"
)

// Events streams the state changes of the containers berth manages (label
// berth.managed=true) as the engine reports them: create → created, start →
// running, die and stop → stopped (a stop yields both), destroy → missing.
// The subscription is in place when Events returns.
//
// The stream ends when ctx ends or the engine connection fails. Then the
// event channel is closed and the error channel — closed right after —
// holds the reason, or nothing when ctx ended. Events can be called again
// at any time; a caller that resubscribes after a failure should List to
// catch up with what happened in between.
func (r *Runtime) Events(ctx context.Context) (<-chan sandbox.Event, <-chan error) {
	out := make(chan sandbox.Event)
	errc := make(chan error, 1)
	msgs, errs := r.cli.Events(ctx, events.ListOptions{
		Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", sandbox.LabelManaged+"=true"),
			filters.Arg("event", string(events.ActionCreate)),
			filters.Arg("event", string(events.ActionStart)),
			filters.Arg("event", string(events.ActionDie)),
			filters.Arg("event", string(events.ActionStop)),
			filters.Arg("event", string(events.ActionDestroy)),
		),
	})
	go func() {
		defer close(errc)
		defer close(out)
		for {
			select {
			case m := <-msgs:
				ev, ok := event(m)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case err := <-errs:
				if ctx.Err() == nil && err != nil {
					errc <- fmt.Errorf("docker events at %s: %w", r.host, err)
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

// event maps an engine event to a state change, if it is one.
func event(m events.Message) (sandbox.Event, bool) {
	var s sandbox.State
	switch m.Action {
	case events.ActionCreate:
		s = sandbox.StateCreated
	case events.ActionStart:
		s = sandbox.StateRunning
	case events.ActionDie, events.ActionStop:
		s = sandbox.StateStopped
	case events.ActionDestroy:
		s = sandbox.StateMissing
	default:
		return sandbox.Event{}, false
	}
	t := time.Unix(0, m.TimeNano)
	if m.TimeNano == 0 {
		t = time.Unix(m.Time, 0)
	}
	return sandbox.Event{
		ContainerID: m.Actor.ID,
		WorkspaceID: m.Actor.Attributes[sandbox.LabelWorkspace],
		State:       s,
		Time:        t,
	}, true
}
