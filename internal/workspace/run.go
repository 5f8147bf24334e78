package workspace

import (
	"context"
	"sync"
	"time"
)

// Run does the service's background work until ctx ends: it follows
// container events (Watch), measures disk usage every diskEvery, and stops
// idle workspaces. It returns only when all of that work has ended, so the
// caller may close the store as soon as Run returns.
func (s *Service) Run(ctx context.Context, diskEvery time.Duration) {
	var watch sync.WaitGroup
	defer watch.Wait()
	watch.Go(func() { s.Watch(ctx) })
	idleEvery := time.Minute
	if t := s.containers.IdleTimeout / 4; t > 0 && t < idleEvery {
		idleEvery = t
	}
	disk := time.NewTicker(diskEvery)
	idle := time.NewTicker(idleEvery)
	defer disk.Stop()
	defer idle.Stop()
	if err := s.MeasureDisk(ctx); err != nil && ctx.Err() == nil {
		s.logger.Warn("measuring disk usage failed", "error", err.Error())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-disk.C:
			if err := s.MeasureDisk(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("measuring disk usage failed", "error", err.Error())
			}
		case <-idle.C:
			if _, err := s.StopIdle(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("stopping idle workspaces failed", "error", err.Error())
			}
		}
	}
}
