package workspace

import (
	"context"
	"errors"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/gitop"
	"github.com/berthhq/berth/internal/store"
	"github.com/google/uuid"
)

// Spec is what a new workspace is made of.
type Spec struct {
	Name        string
	Description string
	Path        string
	GitURL      string
	Branch      string
	Tags        []string
	Metadata    map[string]string
	Image       string
	MemoryMB    int64
	CPUs        float64
	Pids        int64
}

// Create makes a workspace owned by the caller and its (stopped)
// container. Without spec.Path berth makes a new directory for it (and
// queues the clone of spec.GitURL into it); with one, an existing host
// directory is imported, which needs access.PermWorkspaceImport. Either
// way no two workspaces share or nest directories (the store checks it
// atomically). If the container cannot be created, nothing is kept — the
// directory berth made included — and the error says why.
func (s *Service) Create(ctx context.Context, p access.Principal, spec Spec) (*store.Workspace, error) {
	name, err := cleanName(spec.Name)
	if err != nil {
		return nil, err
	}
	if err := s.containers.checkLimits(spec); err != nil {
		return nil, err
	}
	if err := s.containers.checkImage("", spec.Image); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	managed := spec.Path == ""
	var path string
	if managed {
		if spec.GitURL != "" {
			if _, err := gitop.Argv(gitop.Op{Operation: gitop.Clone, URL: spec.GitURL, Ref: spec.Branch}); err != nil {
				var ge *gitop.Error
				if errors.As(err, &ge) && ge.Field == "ref" {
					return nil, fault.Invalid("branch", ge.Reason)
				}
				if errors.As(err, &ge) {
					return nil, fault.Invalid("git_url", ge.Reason)
				}
				return nil, fault.Invalid("git_url", err.Error())
			}
		}
	} else {
		if !access.Allows(p.Role, access.PermWorkspaceImport) {
			return nil, fault.New(fault.ErrPermissionDenied, "importing an existing host directory (path) is for admins; leave path empty and berth makes a new directory for the workspace")
		}
		if path, err = s.roots.Resolve(spec.Path); err != nil {
			if f, ok := errors.AsType[*fault.Error](err); ok && f.Cause != nil {
				s.logger.Info("workspace path refused", "path", spec.Path, "cause", f.Cause.Error())
			}
			return nil, err
		}
	}
	ctx = context.WithoutCancel(ctx) // the directory, the record and the container go together
	if managed {
		var opened bool
		if path, opened, err = s.roots.Make(p.UserID, id, s.owner); err != nil {
			return nil, err
		}
		if opened {
			s.logger.Warn("berth cannot give the workspace directory to the container user (it does not run as root), so the directory is writable by all inside berth's own 0700 directory; run berth as root or with --workspace-user set to its own uid:gid",
				"workspace", id, "user", s.containers.User)
		}
	}
	discardDir := func() {
		if managed {
			if err := s.roots.Remove(path); err != nil {
				s.logger.Error("removing the directory of a workspace that was not made", "workspace", id, "error", err.Error())
			}
		}
	}
	now := s.now().UTC()
	w := &store.Workspace{
		ID:          id,
		OwnerID:     p.UserID,
		Name:        name,
		Description: spec.Description,
		Path:        path,
		Managed:     managed,
		Status:      store.WorkspaceCreating,
		GitURL:      spec.GitURL,
		Branch:      spec.Branch,
		Tags:        uniqueTags(spec.Tags),
		Metadata:    spec.Metadata,
		Image:       spec.Image,
		MemoryMB:    spec.MemoryMB,
		CPUs:        spec.CPUs,
		Pids:        spec.Pids,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	if w.Metadata == nil {
		w.Metadata = map[string]string{}
	}
	// The record keeps the limits in effect, the server's defaults where the
	// request left them zero, so what it shows is what the container gets.
	if w.MemoryMB == 0 {
		w.MemoryMB = s.containers.MemoryMB
	}
	if w.CPUs == 0 {
		w.CPUs = s.containers.CPUs
	}
	if w.Pids == 0 {
		w.Pids = s.containers.Pids
	}
	if err := s.store.CreateWorkspaceWithin(ctx, w, s.ownedQuota(p)); err != nil {
		discardDir()
		return nil, err
	}
	containerID, imageID, err := s.createContainer(ctx, w)
	if err != nil {
		if derr := s.store.DeleteWorkspace(ctx, w.ID); derr != nil {
			s.logger.Error("removing a workspace whose container failed", "workspace", w.ID, "error", derr.Error())
		}
		discardDir()
		return nil, containerFault("container could not be created", err)
	}
	w.AccessRole = store.WorkspaceOwner
	created, err := s.setContainer(ctx, w, store.WorkspaceStopped, containerID, imageID)
	if err != nil {
		return nil, err
	}
	s.Touch(w.ID)
	if managed && w.GitURL != "" && s.firstTask != nil {
		if err := s.firstTask(ctx, p, created); err != nil {
			// The workspace is made; the caller learns why its clone is
			// missing and can run it as a git_operation task.
			s.logger.Warn("queueing the clone of a new workspace failed", "workspace", w.ID, "error", err.Error())
			msg := err.Error()
			if m, ok := fault.Message(err); ok {
				msg = m
			}
			reason := "the clone of git_url could not be queued (" + msg + "); run a git_operation CLONE task"
			if c, err := s.store.UpdateWorkspace(ctx, w.ID, store.WorkspaceUpdate{StatusReason: &reason}, s.now().UTC()); err == nil {
				s.forget(ctx, w.ID)
				c.AccessRole = created.AccessRole
				created = c
			}
		}
	}
	return created, nil
}
