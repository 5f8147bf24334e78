// Package stats answers StatsService: counts over the workspaces and tasks a
// caller can see, or over the whole server for admins.
//
// stats imports internal/store, internal/access and internal/fault.
package stats

import (
	"context"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/store"
)

// Service counts.
type Service struct {
	store *store.Store
}

// NewService returns a Service over st.
func NewService(st *store.Store) *Service { return &Service{store: st} }

// Get counts what p can see, or everything when global (admins only).
func (s *Service) Get(ctx context.Context, p access.Principal, global bool) (*store.Stats, error) {
	if global && !p.IsAdmin() {
		return nil, fault.New(fault.ErrPermissionDenied, "only admins can read global stats; leave global unset for your own")
	}
	// "Own" stats count the caller's own and shared workspaces, even for
	// an admin, who could see every workspace.
	return s.store.CountStats(ctx, store.Viewer{UserID: p.UserID}, global)
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
		Users:              st.Users,
		Workspaces:         st.Workspaces,
		WorkspacesByStatus: make(map[string]int64, len(st.WorkspacesByStatus)),
		Tasks:              st.Tasks,
		TasksByStatus:      st.TasksByStatus,
		TotalCostUsd:       st.TotalCostUSD,
	}
	for status, n := range st.WorkspacesByStatus {
		out.WorkspacesByStatus[string(status)] = n
	}
	return out, nil
}
