package admin

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/page"
)

// Handler serves berth.v1.AdminService by translating to the Service.
type Handler struct {
	svc *Service
}

var _ berthv1connect.AdminServiceHandler = (*Handler)(nil)

// NewHandler returns the AdminService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// ListUsers implements berthv1connect.AdminServiceHandler.
func (h *Handler) ListUsers(ctx context.Context, req *berthv1.ListUsersRequest) (*berthv1.ListUsersResponse, error) {
	pg := page.New(req.GetPage(), req.GetPageSize())
	users, total, err := h.svc.ListUsers(ctx, UserQuery{Page: pg, Search: req.GetSearch(), Role: access.RoleFromProto(req.GetRole())})
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListUsersResponse{Users: make([]*berthv1.User, 0, len(users)), Pagination: pg.Of(total).Proto()}
	for _, u := range users {
		out.Users = append(out.Users, access.UserToProto(u))
	}
	return out, nil
}

// SetUserRole implements berthv1connect.AdminServiceHandler.
func (h *Handler) SetUserRole(ctx context.Context, req *berthv1.SetUserRoleRequest) (*berthv1.SetUserRoleResponse, error) {
	u, err := h.svc.SetUserRole(ctx, req.GetUserId(), access.RoleFromProto(req.GetRole()))
	if err != nil {
		return nil, err
	}
	return &berthv1.SetUserRoleResponse{User: access.UserToProto(u)}, nil
}

// DisableUser implements berthv1connect.AdminServiceHandler.
func (h *Handler) DisableUser(ctx context.Context, req *berthv1.DisableUserRequest) (*berthv1.DisableUserResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	u, err := h.svc.DisableUser(ctx, p, req.GetUserId())
	if err != nil {
		return nil, err
	}
	return &berthv1.DisableUserResponse{User: access.UserToProto(u)}, nil
}

// EnableUser implements berthv1connect.AdminServiceHandler.
func (h *Handler) EnableUser(ctx context.Context, req *berthv1.EnableUserRequest) (*berthv1.EnableUserResponse, error) {
	u, err := h.svc.EnableUser(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	return &berthv1.EnableUserResponse{User: access.UserToProto(u)}, nil
}

// ListAuditEvents implements berthv1connect.AdminServiceHandler.
func (h *Handler) ListAuditEvents(ctx context.Context, req *berthv1.ListAuditEventsRequest) (*berthv1.ListAuditEventsResponse, error) {
	pg := page.New(req.GetPage(), req.GetPageSize())
	events, total, err := h.svc.ListAuditEvents(ctx, AuditQuery{Page: pg, Action: req.GetAction(), ActorID: req.GetActorId(), TargetID: req.GetTargetId()})
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListAuditEventsResponse{Events: make([]*berthv1.AuditEvent, 0, len(events)), Pagination: pg.Of(total).Proto()}
	for _, e := range events {
		out.Events = append(out.Events, &berthv1.AuditEvent{
			Id:            e.ID,
			Time:          timestamppb.New(e.Time),
			Action:        e.Action,
			Outcome:       e.Outcome,
			ActorId:       e.ActorID,
			TargetType:    e.TargetType,
			TargetId:      e.TargetID,
			SourceAddress: e.SourceAddress,
			RequestId:     e.RequestID,
			Details:       e.Details,
		})
	}
	return out, nil
}
