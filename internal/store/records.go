package store

import "time"

// Role is a global account role.
type Role string

// The global roles.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
	RoleViewer Role = "viewer"
)

// User is an account.
type User struct {
	ID string
	// Email is lower-cased. It is the login email of a password account; an
	// account created by OIDC login has none, and reads give the email of its
	// oldest identity instead, for display. FindUserByEmail matches only the
	// login email.
	Email        string
	Name         string
	PasswordHash string // argon2id PHC string; empty for accounts without a password
	Role         Role
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
	LastLoginAt  *time.Time
}

// Session is one sign-in: the family of refresh tokens it hands out and the
// access tokens that carry its id.
type Session struct {
	ID            string
	UserID        string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	RevokedAt     *time.Time
	SourceAddress string
	UserAgent     string
	Method        string // "password" or "oidc:<provider>"
	CookieHash    []byte // SHA-256 of the browser cookie; nil for API sessions
}

// RefreshToken is one opaque refresh token, stored only as a hash.
type RefreshToken struct {
	ID        string
	SessionID string
	UserID    string
	TokenHash []byte // SHA-256 of the token
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time // set when it was exchanged; a token works once
}

// UserFilter selects and pages accounts for ListUsers.
type UserFilter struct {
	// Search matches a literal substring of the email or the name,
	// ignoring the case of ASCII letters.
	Search string
	// Role keeps only accounts with this role; "" keeps all.
	Role Role
	// Offset skips that many matching accounts; a negative one counts as 0.
	Offset int
	// Limit caps the page; zero or less means no cap.
	Limit int
}

// Identity links an account to a subject of an OIDC provider.
type Identity struct {
	Issuer  string
	Subject string
	UserID  string
	// Email is what the provider last said, lower-cased; it is the account's
	// display email when the account has no login email.
	Email     string
	CreatedAt time.Time
}

// APIKey is a long-lived credential for scripts, stored only as a hash. The
// Prefix is the visible start of the key, by which it is looked up.
type APIKey struct {
	ID         string
	UserID     string
	Name       string
	Prefix     string
	KeyHash    []byte
	Role       Role // the most the key may do; never more than its owner
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time // nil: never expires
	RevokedAt  *time.Time
	// ManageKeys lets the key create, list and revoke its account's keys.
	ManageKeys bool
	// ParentID is the key that created this one; empty for a key created
	// by a signed-in session.
	ParentID string
	// AncestorRevoked is set by FindAPIKeyByPrefix when a key that created
	// this one, directly or through others, is revoked: such a key no
	// longer works, even if a revocation raced its creation and missed it.
	AncestorRevoked bool
}

// StreamTicket is a short-lived, single-use ticket that opens one stream for
// a client that cannot send an Authorization header (a browser's EventSource
// or WebSocket), stored only as a hash.
type StreamTicket struct {
	TicketHash []byte // SHA-256 of the ticket
	UserID     string
	SessionID  string // the session that asked for it; empty for an API key
	APIKeyID   string // the API key that asked for it; empty for a session
	Target     string // the stream it opens, such as "task:<id>" or "ws"
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     *time.Time // set when it was redeemed; a ticket works once
}

// AuditEvent is one recorded security event. Audit events outlive the
// accounts and things they name.
type AuditEvent struct {
	ID            string
	Time          time.Time
	Action        string // such as "auth.login"
	Outcome       string // "success" or "failure"
	ActorID       string
	TargetType    string
	TargetID      string
	SourceAddress string
	RequestID     string
	Details       map[string]string // never nil when read from the store
}

// AuditFilter selects and pages audit events for ListAuditEvents. An empty
// field does not filter; a set one matches exactly.
type AuditFilter struct {
	Action   string
	ActorID  string
	TargetID string
	// Offset skips that many matching events; a negative one counts as 0.
	Offset int
	// Limit caps the page; zero or less means no cap.
	Limit int
}

// WorkspaceStatus is a workspace's life-cycle state.
type WorkspaceStatus string

// The workspace states.
const (
	WorkspaceCreating WorkspaceStatus = "creating"
	WorkspaceStopped  WorkspaceStatus = "stopped"
	WorkspaceStarting WorkspaceStatus = "starting"
	WorkspaceRunning  WorkspaceStatus = "running"
	WorkspaceStopping WorkspaceStatus = "stopping"
	WorkspaceError    WorkspaceStatus = "error"
	WorkspaceArchived WorkspaceStatus = "archived"
)

// WorkspaceRole is a user's role in one workspace.
type WorkspaceRole string

// The workspace roles. WorkspaceAdmin is not stored: it is what an admin who
// is not a member sees.
const (
	WorkspaceOwner  WorkspaceRole = "owner"
	WorkspaceEditor WorkspaceRole = "editor"
	WorkspaceViewer WorkspaceRole = "viewer"
	WorkspaceAdmin  WorkspaceRole = "admin"
)

// Workspace is a project directory and its container.
type Workspace struct {
	ID           string
	OwnerID      string
	Name         string
	Description  string
	Path         string
	Status       WorkspaceStatus
	StatusReason string
	GitURL       string
	Branch       string
	Tags         []string          // never nil when read from the store
	Metadata     map[string]string // never nil when read from the store
	Image        string
	// ImageID is the image the container was last created from, resolved
	// from Image (or the server default) when the workspace started.
	ImageID     string
	ContainerID string
	// Managed says berth created Path for this workspace; otherwise an
	// admin imported an existing host directory.
	Managed     bool
	MemoryMB    int64
	CPUs        float64
	Pids        int64
	DiskUsageMB int64
	CreatedAt   time.Time
	UpdatedAt   time.Time

	// Stats is computed from the tasks table when the workspace is read.
	Stats WorkspaceStats
	// AccessRole is the reading viewer's role in the workspace, computed when
	// the workspace is read through a Viewer.
	AccessRole WorkspaceRole
}

// WorkspaceStats counts a workspace's tasks.
type WorkspaceStats struct {
	TotalTasks     int64
	RunningTasks   int64
	CompletedTasks int64 // succeeded
	FailedTasks    int64 // failed (not cancelled, not timed out)
	CancelledTasks int64
	TimedOutTasks  int64
}

// Viewer is who is reading: the store applies access control inside its
// queries, so a workspace the viewer may not see is simply not found.
type Viewer struct {
	UserID string
	Admin  bool // admins see everything
}

// WorkspaceFilter selects, sorts and pages workspaces.
type WorkspaceFilter struct {
	Viewer Viewer
	// Search matches a substring of name or description, ignoring the case
	// of ASCII letters.
	Search string
	// Status is "", "active" (anything but archived) or one WorkspaceStatus.
	Status string
	// Sort is "name", "-name", "created_at" or "-created_at" (default).
	// Names sort by their bytes with ASCII letters folded to lower case;
	// ties are broken by id so pages are stable.
	Sort string
	// Offset skips that many matching workspaces; a negative one counts as 0.
	Offset int
	// Limit caps the page; zero or less means no cap (the API caps it at 100).
	Limit int
}

// WorkspaceUpdate lists the fields to change; nil pointers stay as they are.
type WorkspaceUpdate struct {
	Name         *string
	Description  *string
	GitURL       *string
	Branch       *string
	Tags         *[]string
	Metadata     *map[string]string
	Status       *WorkspaceStatus
	StatusReason *string
	ContainerID  *string
	// Image is the image reference the workspace asks for ("" = the
	// server's default).
	Image       *string
	ImageID     *string
	DiskUsageMB *int64
	// IfStatus, when not empty, makes the update conditional: it applies
	// only while the workspace's status is one of these, atomically, and
	// fails with fault.ErrFailedPrecondition otherwise. Several instances
	// use it to agree on who starts or stops a workspace.
	IfStatus []WorkspaceStatus
}

// Member is a user a workspace is shared with.
type Member struct {
	WorkspaceID string
	UserID      string
	Email       string
	Name        string
	Role        WorkspaceRole
	CreatedAt   time.Time
}

// Stats are counts for GetStats.
type Stats struct {
	Users              int64 // only counted for the global scope
	Workspaces         int64
	WorkspacesByStatus map[WorkspaceStatus]int64
	Tasks              int64
	TasksByStatus      map[string]int64
	TotalCostUSD       float64
}
