// Package audit records security events (sign-ins, key and role changes,
// sharing, deletions) with who did what to which thing, from where, under
// which request id.
//
// Recording never fails the operation it describes: a store error is
// logged instead, loudly.
package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/store"
)

// The recorded actions.
const (
	ActionRegister     = "auth.register"
	ActionLogin        = "auth.login"
	ActionLogout       = "auth.logout"
	ActionOIDCLogin    = "auth.oidc_login"
	ActionRefreshReuse = "auth.refresh_reuse"
	ActionAPIKeyCreate = "api_key.create"
	// #nosec G101 -- an audit action name
	ActionAPIKeyRevoke    = "api_key.revoke"
	ActionUserRole        = "user.role"
	ActionUserDisable     = "user.disable"
	ActionUserEnable      = "user.enable"
	ActionMemberAdd       = "workspace.member_add"
	ActionMemberRemove    = "workspace.member_remove"
	ActionWorkspaceDelete = "workspace.delete"
)

// ActionWorkspaceImage records a workspace switching the image it runs:
// whoever chooses that image chooses the code that runs with the
// workspace's files and keys.
const ActionWorkspaceImage = "workspace.image"

// The outcomes.
const (
	Success = "success"
	Failure = "failure"
)

// Event is one thing to record; the actor, address and request id come from
// the context when not set.
type Event struct {
	Action     string
	Outcome    string
	ActorID    string
	TargetType string
	TargetID   string
	Details    map[string]string
}

// Recorder writes events to the store.
type Recorder struct {
	store  *store.Store
	logger *slog.Logger
	now    func() time.Time
}

// NewRecorder returns a Recorder. now is the clock.
func NewRecorder(st *store.Store, logger *slog.Logger, now func() time.Time) *Recorder {
	return &Recorder{store: st, logger: logger, now: now}
}

// Record stores e. It does not fail: a store error is logged at error level
// with the event, so nothing is lost silently.
func (r *Recorder) Record(ctx context.Context, e Event) {
	if r == nil {
		return
	}
	req := access.RequestFrom(ctx)
	if e.ActorID == "" {
		if p, ok := access.PrincipalFrom(ctx); ok {
			e.ActorID = p.UserID
		}
	}
	if e.Outcome == "" {
		e.Outcome = Success
	}
	ev := &store.AuditEvent{
		ID:            uuid.NewString(),
		Time:          r.now().UTC(),
		Action:        e.Action,
		Outcome:       e.Outcome,
		ActorID:       e.ActorID,
		TargetType:    e.TargetType,
		TargetID:      e.TargetID,
		SourceAddress: req.SourceAddress,
		RequestID:     req.ID,
		Details:       e.Details,
	}
	if ev.Details == nil {
		ev.Details = map[string]string{}
	}
	// The event outlives a canceled request: record it regardless.
	if err := r.store.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
		r.logger.ErrorContext(ctx, "audit event not recorded", "action", e.Action, "outcome", e.Outcome,
			"actor", e.ActorID, "target_type", e.TargetType, "target", e.TargetID, "error", err.Error())
	}
}
