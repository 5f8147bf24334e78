// Package workspace holds the rules for workspaces: where their directories
// are (berth makes them, or an admin imports one; never shared, never
// nested, checked again at every use), who may see and change them, and
// their records' life cycle. Its handler.go translates the generated
// WorkspaceService to the Service here.
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
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gitop"
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
	owner      Owner // who gets the directories berth makes
	firstTask  FirstTask
	maxOwned   int64 // see LimitOwned
	taskProto  func(*store.TaskRecord) *berthv1.Task
}

// FirstTask queues the first task of a new workspace whose directory berth
// made: the clone of its git_url. It runs as the creator, with the
// creator's permissions and limits.
type FirstTask func(ctx context.Context, p access.Principal, w *store.Workspace) error

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
	// TaskProto is the task package's conversion of a task to its API
	// message (task.ToProto), for the task events of WatchWorkspace:
	// workspace and task are siblings under the server, which wires them,
	// and neither imports the other. Without it those events carry only
	// the task's id, workspace and status.
	TaskProto func(*store.TaskRecord) *berthv1.Task
	// FirstTask, when set, queues the clone of a new managed workspace's
	// git_url; it may be set after NewService returns and before the
	// service is used (the task service that does it needs this one).
	FirstTask *FirstTask
}

// NewService returns a Service. The directories it makes are given to the
// container user (Containers.User) when it is numeric, except on the
// process runtime, whose commands run as berth itself.
func NewService(d Deps) *Service {
	owner := Owner{UID: -1, GID: -1}
	if !d.Containers.Ephemeral {
		var ok bool
		if owner, ok = ParseOwner(d.Containers.User); !ok && d.Containers.User != "" && d.Logger != nil {
			d.Logger.Warn("the workspace user is not a numeric uid[:gid]; the directories berth makes for workspaces stay berth's own, and the container user may not be able to write them", "user", d.Containers.User)
		}
	}
	s := &Service{
		store: d.Store, roots: d.Roots, runtime: d.Runtime, containers: d.Containers,
		bus: d.Bus, streams: d.Streams, audit: d.Audit, logger: d.Logger, now: d.Now, taskProto: d.TaskProto,
		activity: activity{last: make(map[string]time.Time), holds: make(map[string]int)},
		owner:    owner,
	}
	if s.taskProto == nil {
		s.taskProto = func(t *store.TaskRecord) *berthv1.Task {
			status := berthv1.TaskStatus_value["TASK_STATUS_"+strings.ToUpper(string(t.Status))]
			return &berthv1.Task{Id: t.ID, WorkspaceId: t.WorkspaceID, Status: berthv1.TaskStatus(status)}
		}
	}
	if d.FirstTask != nil {
		s.firstTask = func(ctx context.Context, p access.Principal, w *store.Workspace) error {
			if *d.FirstTask == nil {
				return errors.New("no task service to queue the clone")
			}
			return (*d.FirstTask)(ctx, p, w)
		}
	}
	return s
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
// directory stays unless deleteDir is set, and only a directory berth made
// (Managed) may be deleted: asking to delete an imported one is refused
// before anything is touched.
func (s *Service) Delete(ctx context.Context, p access.Principal, id string, deleteDir bool) error {
	w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
	if err != nil {
		return err
	}
	if !manages(w) {
		return fault.New(fault.ErrPermissionDenied, "only the workspace's owner or an admin can delete it (your role: %s)", w.AccessRole)
	}
	if deleteDir && !w.Managed {
		return fault.New(fault.ErrFailedPrecondition, "the workspace's directory was imported from the host, and berth never deletes an imported directory; delete the workspace without delete_directory")
	}
	ctx = context.WithoutCancel(ctx)
	if w.ContainerID != "" {
		if err := s.runtime.Remove(ctx, w.ContainerID); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			return &fault.Error{Kind: fault.ErrUnavailable, Message: "the workspace container could not be removed: " + err.Error(), Cause: err}
		}
	}
	if deleteDir {
		if err := s.roots.Remove(w.Path); err != nil {
			s.logger.Error("deleting a workspace directory failed", "workspace", id, "error", err.Error())
			return &fault.Error{Kind: fault.ErrUnavailable, Message: "the workspace's directory could not be deleted completely; the workspace is kept, try again", Cause: err}
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
