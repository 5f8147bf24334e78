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

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
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
	records    *cache.Decoded[*store.Workspace] // nil: Get reads the store (see Deps.Records)
	taskCounts func(ctx context.Context, id string) (store.WorkspaceStats, error)
	audit      *audit.Recorder
	logger     *slog.Logger
	now        func() time.Time
	activity   activity
	owner      Owner // who gets the directories berth makes
	firstTask  FirstTask
	maxOwned   int64 // see Deps.MaxOwned
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
	// Records, when set, is the cache Get reads workspace records through
	// (see find); nil reads the store every time.
	Records *cache.Cache
	// TaskCounts, when set, counts a workspace's tasks for Get when the
	// record came from Records (the stats service's WorkspaceCounts,
	// which caches them until a task changes); nil counts them in the
	// store.
	TaskCounts func(ctx context.Context, id string) (store.WorkspaceStats, error)
	// MaxOwned caps the workspaces one user may own (0: no cap): Create is
	// refused with fault.ErrResourceExhausted past it, counted and inserted
	// atomically by the store. Admins are exempt: they import directories
	// and set up workspaces for others, and can change the quota anyway.
	MaxOwned int64
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
		bus: d.Bus, streams: d.Streams, audit: d.Audit, logger: d.Logger, now: d.Now,
		taskCounts: d.TaskCounts, maxOwned: d.MaxOwned, taskProto: d.TaskProto,
		activity: activity{last: make(map[string]time.Time), holds: make(map[string]int)},
		owner:    owner,
	}
	if d.Records != nil {
		s.records = cache.NewDecoded(d.Records, decodeRecord)
	}
	if s.taskCounts == nil {
		s.taskCounts = d.Store.WorkspaceTaskStats
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

// Get returns a workspace the caller may see; any other is not found. Its
// Tags and Metadata may be shared with other callers' copies (see find):
// read them, do not change them.
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
	s.forgetActivity(id)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionWorkspaceDelete, TargetType: "workspace", TargetID: id,
		Details: map[string]string{"name": w.Name, "owner_id": w.OwnerID}})
	return nil
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
