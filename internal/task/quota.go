package task

import "context"

// Limits are what a Service refuses past; the zero Limits refuse nothing.
type Limits struct {
	// Queued caps the tasks one user may have waiting in the queue (0: no
	// cap): Create is refused with fault.ErrResourceExhausted past it,
	// counted and inserted atomically by the store, so that one user
	// cannot fill the queue (and the database) for everyone. It applies to
	// admins too: the queue is shared.
	Queued int64
	// Admit, when set, is asked by Create, with the creating user's id,
	// before it stores a task; an error from it (a rate limit) refuses the
	// task.
	Admit func(ctx context.Context, userID string) error
}
