// Package admin will hold account administration and the audit log. Until
// they exist, its handler answers every AdminService RPC with Unimplemented
// and says why.
//
// admin imports internal/fault.
package admin

import (
	"context"

	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
)

// Handler serves berth.v1.AdminService.
type Handler struct{}

var _ berthv1connect.AdminServiceHandler = Handler{}

var (
	errNoUserAdmin = fault.New(fault.ErrUnimplemented,
		"account administration is not available on this server yet: roles are assigned at registration (the first account is the admin)")
	errNoAudit = fault.New(fault.ErrUnimplemented,
		"the audit log is not available on this server yet: no security events are recorded")
)

// ListUsers implements berthv1connect.AdminServiceHandler; not offered yet.
func (Handler) ListUsers(context.Context, *berthv1.ListUsersRequest) (*berthv1.ListUsersResponse, error) {
	return nil, errNoUserAdmin
}

// SetUserRole implements berthv1connect.AdminServiceHandler; not offered yet.
func (Handler) SetUserRole(context.Context, *berthv1.SetUserRoleRequest) (*berthv1.SetUserRoleResponse, error) {
	return nil, errNoUserAdmin
}

// DisableUser implements berthv1connect.AdminServiceHandler; not offered yet.
func (Handler) DisableUser(context.Context, *berthv1.DisableUserRequest) (*berthv1.DisableUserResponse, error) {
	return nil, errNoUserAdmin
}

// EnableUser implements berthv1connect.AdminServiceHandler; not offered yet.
func (Handler) EnableUser(context.Context, *berthv1.EnableUserRequest) (*berthv1.EnableUserResponse, error) {
	return nil, errNoUserAdmin
}

// ListAuditEvents implements berthv1connect.AdminServiceHandler; not offered yet.
func (Handler) ListAuditEvents(context.Context, *berthv1.ListAuditEventsRequest) (*berthv1.ListAuditEventsResponse, error) {
	return nil, errNoAudit
}
