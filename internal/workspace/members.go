package workspace

import (
	"context"
	"errors"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

// manages reports whether the reader of w may delete it and decide who it
// is shared with: its owner, or an admin.
func manages(w *store.Workspace) bool {
	return w.AccessRole == store.WorkspaceOwner || w.AccessRole == store.WorkspaceAdmin
}

// AddMember shares a workspace with another account as editor or viewer;
// the account is named by id, or by email when userID is empty. Only the
// owner or an admin may share.
func (s *Service) AddMember(ctx context.Context, p access.Principal, workspaceID, userID, email string, role store.WorkspaceRole) (*store.Member, error) {
	w, err := s.store.FindWorkspace(ctx, workspaceID, p.Viewer())
	if err != nil {
		return nil, err
	}
	if !manages(w) {
		return nil, fault.New(fault.ErrPermissionDenied, "only the workspace's owner or an admin can share it (your role: %s)", w.AccessRole)
	}
	if role != store.WorkspaceEditor && role != store.WorkspaceViewer {
		return nil, fault.Invalid("role", "must be editor or viewer")
	}
	if userID == "" {
		u, err := s.store.FindUserByEmail(ctx, email)
		if errors.Is(err, fault.ErrNotFound) || err == nil && u.Disabled {
			return nil, fault.New(fault.ErrNotFound, "no account has the email address %q; ask the user to sign up first", email)
		}
		if err != nil {
			return nil, err
		}
		userID = u.ID
	}
	m := &store.Member{WorkspaceID: workspaceID, UserID: userID, Role: role, CreatedAt: s.now().UTC()}
	if err := s.store.AddMember(ctx, m); err != nil {
		return nil, err
	}
	s.forget(ctx, workspaceID)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionMemberAdd, TargetType: "workspace", TargetID: workspaceID,
		Details: map[string]string{"user_id": userID, "role": string(role)}})
	return m, nil
}

// RemoveMember stops sharing a workspace with an account. The owner or an
// admin may remove anyone; a member may remove themself.
func (s *Service) RemoveMember(ctx context.Context, p access.Principal, workspaceID, userID string) error {
	w, err := s.store.FindWorkspace(ctx, workspaceID, p.Viewer())
	if err != nil {
		return err
	}
	if !manages(w) && userID != p.UserID {
		return fault.New(fault.ErrPermissionDenied, "only the workspace's owner or an admin can remove other members (your role: %s)", w.AccessRole)
	}
	if err := s.store.RemoveMember(ctx, workspaceID, userID); err != nil {
		return err
	}
	s.forget(ctx, workspaceID)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionMemberRemove, TargetType: "workspace", TargetID: workspaceID,
		Details: map[string]string{"user_id": userID}})
	return nil
}

// ListMembers lists who can use a workspace: its owner first, then the
// members it is shared with, oldest first. Email addresses are shown to the
// owner and admins; other readers see only their own.
func (s *Service) ListMembers(ctx context.Context, p access.Principal, workspaceID string) ([]*store.Member, error) {
	w, err := s.store.FindWorkspace(ctx, workspaceID, p.Viewer())
	if err != nil {
		return nil, err
	}
	owner, err := s.store.FindUserByID(ctx, w.OwnerID)
	if err != nil {
		return nil, err
	}
	members, err := s.store.ListMembers(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	all := append([]*store.Member{{
		WorkspaceID: workspaceID, UserID: owner.ID, Email: owner.Email, Name: owner.Name,
		Role: store.WorkspaceOwner, CreatedAt: w.CreatedAt,
	}}, members...)
	if !manages(w) {
		// Sharing a workspace with someone does not hand them the
		// addresses of everyone else it is shared with.
		for _, m := range all {
			if m.UserID != p.UserID {
				m.Email = ""
			}
		}
	}
	return all, nil
}
