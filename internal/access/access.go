// Package access holds berth's authorisation model: who is calling
// (Principal), what each role may do (the policy table) and which permission
// each RPC needs (read once from the berth.v1.access method option in the
// protobuf descriptors). The authentication and authorisation interceptor
// of the server checks the permission an RPC needs against the caller's
// global role; the domain services narrow it per workspace (owner, editor,
// viewer) and read the Principal from the context.
package access

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	// UserID is the account acting.
	UserID string
	// Role is the global role the request acts with: the account's current
	// role, or for an API key the lower of the key's and the account's.
	Role store.Role
	// SessionID is the session of an access token or browser cookie; empty
	// for API keys.
	SessionID string
	// APIKeyID is the key a request authenticated with; empty otherwise.
	APIKeyID string
	// ManageKeys says the API key was created with manage_keys (see
	// KeyMay); meaningless for other credentials.
	ManageKeys bool
	// Method says how the request authenticated.
	Method Method
}

// Method is how a request authenticated.
type Method string

// The authentication methods.
const (
	MethodToken  Method = "token"   // Authorization: Bearer <access JWT>
	MethodAPIKey Method = "api_key" // Authorization: Bearer berth_… or X-API-Key
	MethodCookie Method = "cookie"  // the browser session cookie
	MethodTicket Method = "ticket"  // a single-use stream ticket
)

// Request describes the HTTP request a call arrived on, for audit records
// and session metadata. The server sets it before any handler runs.
type Request struct {
	ID            string // the X-Request-Id
	SourceAddress string // the client's IP address
	UserAgent     string
}

// RequestKey is the context key of a call's *Request: the server's
// request context answers it from the state it keeps for each request,
// without a context layer of its own.
type RequestKey struct{}

// RequestFrom returns the request described in ctx (zero if none).
func RequestFrom(ctx context.Context) Request {
	if r, ok := ctx.Value(RequestKey{}).(*Request); ok {
		return *r
	}
	return Request{}
}

// Viewer returns the principal as the store's access-control viewer.
func (p Principal) Viewer() store.Viewer {
	return store.Viewer{UserID: p.UserID, Admin: p.Role == store.RoleAdmin}
}

// IsAdmin reports whether the principal acts as an admin.
func (p Principal) IsAdmin() bool { return p.Role == store.RoleAdmin }

type principalKey struct{}

// principalContext is a context carrying a principal: one allocation,
// where context.WithValue would make a second for the principal it
// boxes.
type principalContext struct {
	context.Context
	p Principal
}

func (c *principalContext) Value(key any) any {
	if _, ok := key.(principalKey); ok {
		return &c.p
	}
	return c.Context.Value(key)
}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return &principalContext{Context: ctx, p: p}
}

// PrincipalFrom returns the principal in ctx, if the request is
// authenticated.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok {
		return *p, true
	}
	return Principal{}, false
}

// The permissions named in the proto access options.
const (
	PermAccountSelf     = "account.self"
	PermAPIKeyManage    = "apikey.manage"
	PermWorkspaceRead   = "workspace.read"
	PermWorkspaceCreate = "workspace.create"
	PermWorkspaceUpdate = "workspace.update"
	PermWorkspaceDelete = "workspace.delete"
	PermWorkspaceOp     = "workspace.operate"
	PermWorkspaceShare  = "workspace.share"
	// PermWorkspaceImport allows naming an existing host directory as a
	// workspace's directory (CreateWorkspace with a path). It is checked by
	// the workspace service, not named by an RPC: every workspace
	// directory is then berth's own unless an admin imported it.
	PermWorkspaceImport = "workspace.import"
	PermTaskRead        = "task.read"
	PermTaskCreate      = "task.create"
	PermTaskCancel      = "task.cancel"
	PermStatsRead       = "stats.read"
	PermAdminUsers      = "admin.users"
	PermAdminAudit      = "admin.audit"
)

// policy is the one table that maps global roles to permissions. Workspace
// roles (owner, editor, viewer) narrow these further inside the domain
// services, per workspace.
var policy = map[store.Role][]string{
	store.RoleAdmin: {
		PermAccountSelf, PermAPIKeyManage,
		PermWorkspaceRead, PermWorkspaceCreate, PermWorkspaceUpdate, PermWorkspaceDelete, PermWorkspaceOp, PermWorkspaceShare,
		PermWorkspaceImport,
		PermTaskRead, PermTaskCreate, PermTaskCancel,
		PermStatsRead, PermAdminUsers, PermAdminAudit,
	},
	store.RoleMember: {
		PermAccountSelf, PermAPIKeyManage,
		PermWorkspaceRead, PermWorkspaceCreate, PermWorkspaceUpdate, PermWorkspaceDelete, PermWorkspaceOp, PermWorkspaceShare,
		PermTaskRead, PermTaskCreate, PermTaskCancel,
		PermStatsRead,
	},
	store.RoleViewer: {
		PermAccountSelf, PermAPIKeyManage,
		PermWorkspaceRead, PermTaskRead, PermStatsRead,
	},
}

// Rank orders global roles: a higher rank holds every permission of a lower
// one. Unknown roles rank 0.
func Rank(r store.Role) int {
	switch r {
	case store.RoleAdmin:
		return 3
	case store.RoleMember:
		return 2
	case store.RoleViewer:
		return 1
	}
	return 0
}

// Allows reports whether role grants permission.
func Allows(role store.Role, permission string) bool {
	return slices.Contains(policy[role], permission)
}

// KeyMay reports whether p may use permission as far as its credential is
// concerned (its role is Allows' business). Only PermAPIKeyManage is
// narrowed: an API key holds it only if it was created with manage_keys
// and does not act as a viewer, so that a leaked key — a read-only one
// above all — cannot mint, list or revoke keys. Sessions hold whatever
// their role grants.
func KeyMay(p Principal, permission string) bool {
	if p.APIKeyID == "" || permission != PermAPIKeyManage {
		return true
	}
	return p.ManageKeys && p.Role != store.RoleViewer
}

// Roles lists the global roles in the policy table, most powerful first.
func Roles() []store.Role {
	return []store.Role{store.RoleAdmin, store.RoleMember, store.RoleViewer}
}

// Known reports whether any role grants permission, so a typo in a proto
// option is caught at start-up.
func Known(permission string) bool {
	for _, perms := range policy {
		if slices.Contains(perms, permission) {
			return true
		}
	}
	return false
}

// Rule is an RPC's access declaration.
type Rule struct {
	Public     bool
	Permission string
}

// RuleOf reads the berth.v1.access option of a method.
func RuleOf(method protoreflect.MethodDescriptor) (Rule, bool) {
	opts := method.Options()
	if opts == nil || !proto.HasExtension(opts, berthv1.E_Access) {
		return Rule{}, false
	}
	r, ok := proto.GetExtension(opts, berthv1.E_Access).(*berthv1.AccessRule)
	if !ok || r == nil {
		return Rule{}, false
	}
	return Rule{Public: r.GetPublic(), Permission: r.GetPermission()}, true
}

// Rules maps procedure names ("/berth.v1.WorkspaceService/GetWorkspace") to
// their access rules.
type Rules map[string]Rule

// NewRules reads the rule of every spec. It fails if a method has no rule, a
// rule that is both public and names a permission (or neither), or a
// permission that no role grants: an RPC without a declaration must never
// be served.
func NewRules(specs iter.Seq[connect.Spec]) (Rules, error) {
	rules := make(Rules)
	for spec := range specs {
		method, ok := spec.Schema.(protoreflect.MethodDescriptor)
		if !ok {
			return nil, fmt.Errorf("access: %s has no protobuf schema", spec.Procedure)
		}
		rule, ok := RuleOf(method)
		switch {
		case !ok:
			return nil, fmt.Errorf("access: %s declares no (berth.v1.access) option", spec.Procedure)
		case rule.Public == (rule.Permission != ""):
			return nil, fmt.Errorf("access: %s must be either public or name one permission", spec.Procedure)
		case !rule.Public && !Known(rule.Permission):
			return nil, fmt.Errorf("access: %s names unknown permission %q", spec.Procedure, rule.Permission)
		}
		rules[spec.Procedure] = rule
	}
	return rules, nil
}

// RoleToProto converts a stored role to its API enum.
func RoleToProto(r store.Role) berthv1.Role {
	switch r {
	case store.RoleAdmin:
		return berthv1.Role_ROLE_ADMIN
	case store.RoleMember:
		return berthv1.Role_ROLE_MEMBER
	case store.RoleViewer:
		return berthv1.Role_ROLE_VIEWER
	}
	return berthv1.Role_ROLE_UNSPECIFIED
}

// RoleFromProto converts an API role to the stored one ("" when unspecified).
func RoleFromProto(r berthv1.Role) store.Role {
	switch r {
	case berthv1.Role_ROLE_ADMIN:
		return store.RoleAdmin
	case berthv1.Role_ROLE_MEMBER:
		return store.RoleMember
	case berthv1.Role_ROLE_VIEWER:
		return store.RoleViewer
	}
	return ""
}

// UserToProto converts an account to its API message.
func UserToProto(u *store.User) *berthv1.User {
	return &berthv1.User{
		Id:          u.ID,
		Email:       u.Email,
		Name:        u.Name,
		Role:        RoleToProto(u.Role),
		Disabled:    u.Disabled,
		CreatedAt:   timestamppb.New(u.CreatedAt),
		UpdatedAt:   timestamppb.New(u.UpdatedAt),
		LastLoginAt: OptionalTime(u.LastLoginAt),
	}
}

// OptionalTime converts an optional time to a timestamp (nil stays nil).
func OptionalTime(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}
