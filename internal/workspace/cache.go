package workspace

import (
	"context"
	"crypto/rand"
	"encoding/json"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/store"
)

// find reads a workspace as p sees it, through the cache when there is
// one. With Deps.Records, Get reads workspace records, with the reader's
// access role, through that cache (Valkey-backed across instances, or an
// in-process LRU). Every write of a workspace or of its members made
// through this service invalidates it before the write's call returns, on
// every instance.
//
// Keys are "gen:<id>", a random generation of the workspace that every
// write replaces, and "w:<id>:<generation>:<reader>", the record as one
// reader ("admin" or a user id) sees it: invalidating the generation
// retires every reader's copy at once, and a record is only ever stored
// under the generation read before it was loaded, so no copy loaded
// before a write is served after it. A record is decoded once per cached
// copy (cache.Decoded) and shared: find returns a copy of it. The task
// counts (Stats) change with every task and are read through taskCounts
// (Deps.TaskCounts), which keeps them until a task changes.
func (s *Service) find(ctx context.Context, p access.Principal, id string) (*store.Workspace, error) {
	if s.records == nil {
		return s.store.FindWorkspace(ctx, id, p.Viewer())
	}
	gen, err := s.records.Cache().Get(ctx, "gen:"+id, func(context.Context) ([]byte, error) {
		return []byte(rand.Text()), nil
	})
	if err != nil {
		return nil, err
	}
	v := p.Viewer()
	reader := v.UserID
	if v.Admin {
		reader = "admin"
	}
	shared, err := s.records.Get(ctx, "w:"+id+":"+string(gen)+":"+reader, func(ctx context.Context) ([]byte, error) {
		w, err := s.store.FindWorkspace(ctx, id, v)
		if err != nil {
			return nil, err
		}
		return json.Marshal(w)
	})
	if err != nil {
		return nil, err
	}
	w := *shared // the caller may change its copy's fields
	if w.Stats, err = s.taskCounts(ctx, id); err != nil {
		return nil, err
	}
	return &w, nil
}

// decodeRecord decodes a cached workspace record.
func decodeRecord(b []byte) (*store.Workspace, error) {
	var w store.Workspace
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// forget retires every cached copy of workspace id; call it after a write
// of the workspace or its members committed.
func (s *Service) forget(ctx context.Context, id string) {
	if s.records != nil {
		s.records.Cache().Invalidate(context.WithoutCancel(ctx), "gen:"+id)
	}
}
