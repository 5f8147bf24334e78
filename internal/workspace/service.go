// Package workspace holds the rules for workspaces: where their directories
// may be, who may see and change them, and their records' life cycle.
//
// workspace imports internal/store, internal/access, internal/fault and
// internal/page; its handler.go translates the generated WorkspaceService
// to the Service here.
package workspace

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/page"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
)

// Service manages workspace records.
type Service struct {
	store      *store.Store
	roots      Roots
	runtime    Runtime
	containers Containers
	bus        *bus.Bus
	streams    *stream.Metrics
	records    *cache.Cache // nil: Get reads the store (see UseCache)
	audit      *audit.Recorder
	logger     *slog.Logger
	now        func() time.Time
	activity   activity
}

// Deps are the Service's collaborators.
type Deps struct {
	Store      *store.Store
	Roots      Roots
	Runtime    Runtime
	Containers Containers
	Bus        *bus.Bus
	Streams    *stream.Metrics // may be nil
	Audit      *audit.Recorder
	Logger     *slog.Logger
	Now        func() time.Time
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	return &Service{
		store: d.Store, roots: d.Roots, runtime: d.Runtime, containers: d.Containers,
		bus: d.Bus, streams: d.Streams, audit: d.Audit, logger: d.Logger, now: d.Now,
		activity: activity{last: make(map[string]time.Time), holds: make(map[string]int)},
	}
}

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

// Create registers a project directory as a workspace owned by the caller
// and creates its (stopped) container. If the container cannot be created,
// nothing is kept and the error says why.
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
	path, err := s.roots.Resolve(spec.Path)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	w := &store.Workspace{
		ID:          uuid.NewString(),
		OwnerID:     p.UserID,
		Name:        name,
		Description: spec.Description,
		Path:        path,
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
	if err := s.store.CreateWorkspace(ctx, w); err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx) // the record and its container go together
	containerID, imageID, err := s.createContainer(ctx, w)
	if err != nil {
		if derr := s.store.DeleteWorkspace(ctx, w.ID); derr != nil {
			s.logger.Error("removing a workspace whose container failed", "workspace", w.ID, "error", derr.Error())
		}
		return nil, containerFault("container could not be created", err)
	}
	w.AccessRole = store.WorkspaceOwner
	created, err := s.setContainer(ctx, w, store.WorkspaceStopped, containerID, imageID)
	if err != nil {
		return nil, err
	}
	s.Touch(w.ID)
	return created, nil
}

// Get returns a workspace the caller may see; any other is not found.
func (s *Service) Get(ctx context.Context, p access.Principal, id string) (*store.Workspace, error) {
	w, err := s.find(ctx, p, id)
	if err == nil {
		s.Touch(id)
	}
	return w, err
}

// Query selects a page of workspaces.
type Query struct {
	Page   page.Request
	Search string
	Status string
	Sort   string
}

// List returns the page of workspaces the caller may see and the number of
// all that match.
func (s *Service) List(ctx context.Context, p access.Principal, q Query) ([]*store.Workspace, int64, error) {
	return s.store.ListWorkspaces(ctx, store.WorkspaceFilter{
		Viewer: p.Viewer(),
		Search: strings.TrimSpace(q.Search),
		Status: q.Status,
		Sort:   q.Sort,
		Offset: q.Page.Offset(),
		Limit:  q.Page.Size,
	})
}

// Change lists the fields an update sets; nil fields stay as they are.
type Change struct {
	Name        *string
	Description *string
	GitURL      *string
	Branch      *string
	Tags        *[]string
	Metadata    *map[string]string
	Archived    *bool
}

// Update applies a change. Owners, editors and admins may change a
// workspace; its viewers may not.
func (s *Service) Update(ctx context.Context, p access.Principal, id string, c Change) (*store.Workspace, error) {
	w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
	if err != nil {
		return nil, err
	}
	if w.AccessRole == store.WorkspaceViewer {
		return nil, fault.New(fault.ErrPermissionDenied, "your role in this workspace (viewer) does not allow changing it")
	}
	upd := store.WorkspaceUpdate{
		Description: c.Description,
		GitURL:      c.GitURL,
		Branch:      c.Branch,
		Metadata:    c.Metadata,
	}
	if c.Name != nil {
		name, err := cleanName(*c.Name)
		if err != nil {
			return nil, err
		}
		upd.Name = &name
	}
	if c.Tags != nil {
		tags := uniqueTags(*c.Tags)
		upd.Tags = &tags
	}
	if c.Archived != nil {
		status, err := archiveTransition(w.Status, *c.Archived)
		if err != nil {
			return nil, err
		}
		upd.Status = &status
	}
	updated, err := s.store.UpdateWorkspace(ctx, id, upd, s.now().UTC())
	if err != nil {
		return nil, err
	}
	s.forget(ctx, id)
	updated.AccessRole = w.AccessRole
	updated.Stats = w.Stats
	return updated, nil
}

// Delete removes a workspace record; only its owner or an admin may. The
// project directory is left untouched.
func (s *Service) Delete(ctx context.Context, p access.Principal, id string) error {
	w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
	if err != nil {
		return err
	}
	if !manages(w) {
		return fault.New(fault.ErrPermissionDenied, "only the workspace's owner or an admin can delete it (your role: %s)", w.AccessRole)
	}
	ctx = context.WithoutCancel(ctx)
	if w.ContainerID != "" {
		if err := s.runtime.Remove(ctx, w.ContainerID); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			return &fault.Error{Kind: fault.ErrUnavailable, Message: "the workspace container could not be removed: " + err.Error(), Cause: err}
		}
	}
	if err := s.store.DeleteWorkspace(ctx, id); err != nil {
		return err
	}
	s.forget(ctx, id)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionWorkspaceDelete, TargetType: "workspace", TargetID: id,
		Details: map[string]string{"name": w.Name, "owner_id": w.OwnerID}})
	return nil
}

// manages reports whether the reader of w may delete it and decide who it
// is shared with: its owner, or an admin.
func manages(w *store.Workspace) bool {
	return w.AccessRole == store.WorkspaceOwner || w.AccessRole == store.WorkspaceAdmin
}

// AddMember shares a workspace with another account as editor or viewer.
// Only the owner or an admin may share.
func (s *Service) AddMember(ctx context.Context, p access.Principal, workspaceID, userID string, role store.WorkspaceRole) (*store.Member, error) {
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
// members it is shared with, oldest first.
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
	return append([]*store.Member{{
		WorkspaceID: workspaceID, UserID: owner.ID, Email: owner.Email, Name: owner.Name,
		Role: store.WorkspaceOwner, CreatedAt: w.CreatedAt,
	}}, members...), nil
}

// archiveTransition is the one place that decides archive and unarchive
// moves: only a workspace that is not running can be archived, and an
// unarchived workspace comes back stopped.
func archiveTransition(from store.WorkspaceStatus, archive bool) (store.WorkspaceStatus, error) {
	switch {
	case archive && from == store.WorkspaceArchived, !archive && from != store.WorkspaceArchived:
		return from, nil
	case archive && (from == store.WorkspaceStopped || from == store.WorkspaceError):
		return store.WorkspaceArchived, nil
	case archive:
		return "", fault.New(fault.ErrFailedPrecondition, "a %s workspace cannot be archived; stop it first", from)
	default:
		return store.WorkspaceStopped, nil
	}
}

func cleanName(name string) (string, error) {
	trimmed := strings.TrimSpace(name)
	if trimmed == "" {
		return "", fault.Invalid("name", "must not be blank")
	}
	if strings.ContainsFunc(trimmed, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fault.Invalid("name", "must not contain control characters")
	}
	return trimmed, nil
}

func uniqueTags(tags []string) []string {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// operable returns a workspace the principal may start, stop and run tasks
// in: anyone who can see it but its viewers.
func (s *Service) operable(ctx context.Context, p access.Principal, id string) (*store.Workspace, error) {
	w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
	if err != nil {
		return nil, err
	}
	if w.AccessRole == store.WorkspaceViewer {
		return nil, fault.New(fault.ErrPermissionDenied, "your role in this workspace (viewer) does not allow operating it")
	}
	return w, nil
}
