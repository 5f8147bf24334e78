package task

// LimitQueue caps the tasks one user may have waiting in the queue (0: no
// cap): Create is refused with fault.ErrResourceExhausted past it, counted
// and inserted atomically by the store, so that one user cannot fill the
// queue (and the database) for everyone. It applies to admins too: the
// queue is shared. Call it before the service is used.
func (s *Service) LimitQueue(n int64) { s.queued = n }
