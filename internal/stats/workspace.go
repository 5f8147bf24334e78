package stats

import (
	"context"
	"crypto/rand"
	"encoding/json"

	"github.com/berthhq/berth/internal/store"
)

// WorkspaceCounts counts workspace id's tasks by status, as
// Workspace.Stats holds them, for GetWorkspace. With the counts cache they
// are kept there under the same generation as Get's counts, which every
// write to the tasks table retires before the writing call returns, so a
// GetWorkspace after a task changed never shows the count from before.
// Without it every call counts in the store. It checks no access: the
// caller has already found the workspace as its caller sees it.
func (s *Service) WorkspaceCounts(ctx context.Context, id string) (store.WorkspaceStats, error) {
	if s.counts == nil {
		return s.store.WorkspaceTaskStats(ctx, id)
	}
	gen, err := s.counts.Get(ctx, Generation, func(context.Context) ([]byte, error) { return []byte(rand.Text()), nil })
	if err != nil {
		return store.WorkspaceStats{}, err
	}
	return s.perWorkspace.Get(ctx, string(gen)+":workspace:"+id, func(ctx context.Context) ([]byte, error) {
		st, err := s.store.WorkspaceTaskStats(ctx, id)
		if err != nil {
			return nil, err
		}
		return json.Marshal(st)
	})
}

// decodeWorkspaceStats decodes what WorkspaceCounts caches.
func decodeWorkspaceStats(b []byte) (store.WorkspaceStats, error) {
	var st store.WorkspaceStats
	err := json.Unmarshal(b, &st)
	return st, err
}
