// Package stats answers StatsService: counts over the workspaces and tasks a
// caller can see, or over the whole server for admins.
package stats

import (
	"context"
	"crypto/rand"
	"encoding/json"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/store"
)

// Service counts.
type Service struct {
	store  *store.Store
	counts *cache.Cache // nil: every Get counts in the store
}

// NewService returns a Service over st. With counts (Valkey-backed across
// instances, or an in-process LRU; nil counts in the store on every Get),
// Get keeps its counts there. Entries live under a generation, "gen", that
// the caller must invalidate after every write to the tables the counts
// come from (users, workspaces, workspace_members, tasks): store.OnWrite
// does it before the writing call returns, so no count older than a
// completed write is served.
func NewService(st *store.Store, counts *cache.Cache) *Service {
	return &Service{store: st, counts: counts}
}

// Generation is the cache key to invalidate after such a write.
const Generation = "gen"

// Get counts what p can see, or everything when global (admins only).
func (s *Service) Get(ctx context.Context, p access.Principal, global bool) (*store.Stats, error) {
	if global && !p.IsAdmin() {
		return nil, fault.New(fault.ErrPermissionDenied, "only admins can read global stats; leave global unset for your own")
	}
	// "Own" stats count the caller's own and shared workspaces, even for
	// an admin, who could see every workspace.
	count := func(ctx context.Context) (*store.Stats, error) {
		return s.store.CountStats(ctx, store.Viewer{UserID: p.UserID}, global)
	}
	if s.counts == nil {
		return count(ctx)
	}
	gen, err := s.counts.Get(ctx, Generation, func(context.Context) ([]byte, error) { return []byte(rand.Text()), nil })
	if err != nil {
		return nil, err
	}
	scope := "user:" + p.UserID
	if global {
		scope = "global"
	}
	b, err := s.counts.Get(ctx, string(gen)+":"+scope, func(ctx context.Context) ([]byte, error) {
		st, err := count(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(st)
	})
	if err != nil {
		return nil, err
	}
	var st store.Stats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Handler serves berth.v1.StatsService.
type Handler struct {
	svc *Service
}

var _ berthv1connect.StatsServiceHandler = (*Handler)(nil)

// NewHandler returns the StatsService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetStats implements berthv1connect.StatsServiceHandler.
func (h *Handler) GetStats(ctx context.Context, req *berthv1.GetStatsRequest) (*berthv1.GetStatsResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	st, err := h.svc.Get(ctx, p, req.GetGlobal())
	if err != nil {
		return nil, err
	}
	out := &berthv1.GetStatsResponse{
		Global:             req.GetGlobal(),
		Workspaces:         st.Workspaces,
		WorkspacesByStatus: make(map[string]int64, len(st.WorkspacesByStatus)),
		Tasks:              st.Tasks,
		TasksByStatus:      st.TasksByStatus,
		TotalCostUsd:       st.TotalCostUSD,
	}
	if req.GetGlobal() {
		out.Users = &st.Users
	}
	for status, n := range st.WorkspacesByStatus {
		out.WorkspacesByStatus[string(status)] = n
	}
	return out, nil
}
