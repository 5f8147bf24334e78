package workspace

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// MeasureDisk measures every workspace directory and records its size, so
// reads never walk a directory.
func (s *Service) MeasureDisk(ctx context.Context) error {
	all, _, err := s.store.ListWorkspaces(ctx, store.WorkspaceFilter{Viewer: store.Viewer{Admin: true}})
	if err != nil {
		return err
	}
	for _, w := range all {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.roots.Check(w.Path); err != nil {
			continue // not walked: the next start reports it
		}
		mb := diskUsageMB(w.Path)
		if mb == w.DiskUsageMB {
			continue
		}
		if _, err := s.store.UpdateWorkspace(ctx, w.ID, store.WorkspaceUpdate{DiskUsageMB: &mb}, w.UpdatedAt); err != nil && !errors.Is(err, fault.ErrNotFound) {
			return err
		}
		s.forget(ctx, w.ID)
	}
	return nil
}

// diskUsageMB sums the sizes of the regular files under dir (symlinks are
// not followed), rounded up to MiB.
func diskUsageMB(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts are skipped, not fatal
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return (total + 1<<20 - 1) >> 20
}
