package workspace

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/page"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
)

// Handler serves berth.v1.WorkspaceService by translating to the Service.
type Handler struct {
	svc *Service
}

var _ berthv1connect.WorkspaceServiceHandler = (*Handler)(nil)

// NewHandler returns the WorkspaceService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

func principal(ctx context.Context) access.Principal {
	p, _ := access.PrincipalFrom(ctx)
	return p
}

// ListWorkspaces implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) ListWorkspaces(ctx context.Context, req *berthv1.ListWorkspacesRequest) (*berthv1.ListWorkspacesResponse, error) {
	pg := page.New(req.GetPage(), req.GetPageSize())
	items, total, err := h.svc.List(ctx, principal(ctx), Query{
		Page:   pg,
		Search: req.GetSearch(),
		Status: req.GetStatus(),
		Sort:   req.GetSort(),
	})
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListWorkspacesResponse{
		Workspaces: make([]*berthv1.Workspace, 0, len(items)),
		Pagination: pg.Of(total).Proto(),
	}
	for _, w := range items {
		out.Workspaces = append(out.Workspaces, h.svc.Proto(w))
	}
	return out, nil
}

// CreateWorkspace implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) CreateWorkspace(ctx context.Context, req *berthv1.CreateWorkspaceRequest) (*berthv1.CreateWorkspaceResponse, error) {
	w, err := h.svc.Create(ctx, principal(ctx), Spec{
		Name:        req.GetName(),
		Description: req.GetDescription(),
		Path:        req.GetPath(),
		GitURL:      req.GetGitUrl(),
		Branch:      req.GetBranch(),
		Tags:        req.GetTags(),
		Metadata:    req.GetMetadata(),
		Image:       req.GetImage(),
		MemoryMB:    req.GetResources().GetMemoryMb(),
		CPUs:        req.GetResources().GetCpus(),
		Pids:        req.GetResources().GetPids(),
	})
	if err != nil {
		return nil, err
	}
	return &berthv1.CreateWorkspaceResponse{Workspace: h.svc.Proto(w)}, nil
}

// GetWorkspace implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) GetWorkspace(ctx context.Context, req *berthv1.GetWorkspaceRequest) (*berthv1.GetWorkspaceResponse, error) {
	w, err := h.svc.Get(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, err
	}
	return &berthv1.GetWorkspaceResponse{Workspace: h.svc.Proto(w)}, nil
}

// UpdateWorkspace implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) UpdateWorkspace(ctx context.Context, req *berthv1.UpdateWorkspaceRequest) (*berthv1.UpdateWorkspaceResponse, error) {
	c := Change{
		Name:        req.Name,
		Description: req.Description,
		GitURL:      req.GitUrl,
		Branch:      req.Branch,
		Archived:    req.Archived,
	}
	if req.Tags != nil {
		tags := req.GetTags().GetValues()
		c.Tags = &tags
	}
	if req.Metadata != nil {
		md := req.GetMetadata().GetValues()
		if md == nil {
			md = map[string]string{}
		}
		c.Metadata = &md
	}
	if req.Image != nil {
		// Refused before anything is written; the image is set last.
		if err := h.svc.containers.checkImage(req.GetId(), req.GetImage()); err != nil {
			return nil, err
		}
	}
	w, err := h.svc.Update(ctx, principal(ctx), req.GetId(), c)
	if err != nil {
		return nil, err
	}
	if req.Image != nil {
		if w, err = h.svc.SetImage(ctx, principal(ctx), req.GetId(), req.GetImage()); err != nil {
			return nil, err
		}
	}
	return &berthv1.UpdateWorkspaceResponse{Workspace: h.svc.Proto(w)}, nil
}

// DeleteWorkspace implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) DeleteWorkspace(ctx context.Context, req *berthv1.DeleteWorkspaceRequest) (*berthv1.DeleteWorkspaceResponse, error) {
	if err := h.svc.Delete(ctx, principal(ctx), req.GetId(), req.GetDeleteDirectory()); err != nil {
		return nil, err
	}
	return &berthv1.DeleteWorkspaceResponse{}, nil
}

// StartWorkspace implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) StartWorkspace(ctx context.Context, req *berthv1.StartWorkspaceRequest) (*berthv1.StartWorkspaceResponse, error) {
	w, err := h.svc.Start(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, err
	}
	return &berthv1.StartWorkspaceResponse{Workspace: h.svc.Proto(w)}, nil
}

// StopWorkspace implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) StopWorkspace(ctx context.Context, req *berthv1.StopWorkspaceRequest) (*berthv1.StopWorkspaceResponse, error) {
	w, err := h.svc.Stop(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, err
	}
	return &berthv1.StopWorkspaceResponse{Workspace: h.svc.Proto(w)}, nil
}

// AddMember implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) AddMember(ctx context.Context, req *berthv1.AddMemberRequest) (*berthv1.AddMemberResponse, error) {
	m, err := h.svc.AddMember(ctx, principal(ctx), req.GetWorkspaceId(), req.GetUserId(), req.GetEmail(), roleFromProto(req.GetRole()))
	if err != nil {
		return nil, err
	}
	return &berthv1.AddMemberResponse{Member: memberToProto(m)}, nil
}

// RemoveMember implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) RemoveMember(ctx context.Context, req *berthv1.RemoveMemberRequest) (*berthv1.RemoveMemberResponse, error) {
	if err := h.svc.RemoveMember(ctx, principal(ctx), req.GetWorkspaceId(), req.GetUserId()); err != nil {
		return nil, err
	}
	return &berthv1.RemoveMemberResponse{}, nil
}

// ListMembers implements berthv1connect.WorkspaceServiceHandler.
func (h *Handler) ListMembers(ctx context.Context, req *berthv1.ListMembersRequest) (*berthv1.ListMembersResponse, error) {
	members, err := h.svc.ListMembers(ctx, principal(ctx), req.GetWorkspaceId())
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListMembersResponse{Members: make([]*berthv1.Member, 0, len(members))}
	for _, m := range members {
		out.Members = append(out.Members, memberToProto(m))
	}
	return out, nil
}

func memberToProto(m *store.Member) *berthv1.Member {
	return &berthv1.Member{
		UserId:    m.UserID,
		Email:     m.Email,
		Name:      m.Name,
		Role:      roleToProto[m.Role],
		CreatedAt: timestamppb.New(m.CreatedAt),
	}
}

var roleToProto = map[store.WorkspaceRole]berthv1.WorkspaceRole{
	store.WorkspaceOwner:  berthv1.WorkspaceRole_WORKSPACE_ROLE_OWNER,
	store.WorkspaceEditor: berthv1.WorkspaceRole_WORKSPACE_ROLE_EDITOR,
	store.WorkspaceViewer: berthv1.WorkspaceRole_WORKSPACE_ROLE_VIEWER,
}

func roleFromProto(r berthv1.WorkspaceRole) store.WorkspaceRole {
	for k, v := range roleToProto {
		if v == r {
			return k
		}
	}
	return ""
}

// WatchWorkspace implements berthv1connect.WorkspaceServiceHandler: the
// workspace's current state, then its status changes and its tasks'
// lifecycle events until the client goes away.
//
// It is FollowEvents taken apart, as StreamTaskLogs is: the watch is
// opened in a call that returns, and the stream then waits in the watch's
// Run, so that the goroutine parked under it holds few frames.
//
// What it sends is flushed once per wake-up (stream.Batch).
func (h *Handler) WatchWorkspace(ctx context.Context, req *berthv1.WatchWorkspaceRequest, out berthv1connect.WorkspaceServiceWatchWorkspaceServerStream) error {
	loop := stream.Loop{Flush: stream.TakeBatch(ctx).Commit}
	w, err := h.openWatch(ctx, req, out)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Run(ctx, loop)
}

// openWatch opens WatchWorkspace's watch and sends the workspace's state.
func (h *Handler) openWatch(ctx context.Context, req *berthv1.WatchWorkspaceRequest, out berthv1connect.WorkspaceServiceWatchWorkspaceServerStream) (*stream.Watch, error) {
	return h.svc.OpenEvents(ctx, principal(ctx), req.GetWorkspaceId(), func(ev *berthv1.WorkspaceEvent) error {
		return out.Send(&berthv1.WatchWorkspaceResponse{Event: ev})
	}, nil)
}

// FollowEvents is Follow with what it sends turned into the API's
// WorkspaceEvents, as WatchWorkspace, the SSE stream and the WebSocket all
// send them: the workspace's state and status changes, and its tasks'
// changes — "task.created" when a task was queued (with the task),
// "task.status" when a task's status changed, "task.progress" when only
// its progress did (both with the progress).
func (s *Service) FollowEvents(ctx context.Context, p access.Principal, id string, send func(*berthv1.WorkspaceEvent) error, loop stream.Loop) error {
	return s.Follow(ctx, p, id, s.events(ctx, p, send), loop)
}

// OpenEvents is FollowEvents a step at a time, as OpenFollow is Follow: the
// caller steps the watch whenever wake was called and closes it when done
// with it. ctx is the watch's: the steps read the store with it.
func (s *Service) OpenEvents(ctx context.Context, p access.Principal, id string, send func(*berthv1.WorkspaceEvent) error, wake func()) (*stream.Watch, error) {
	return s.OpenFollow(ctx, p, id, s.events(ctx, p, send), wake)
}

// events turns what Follow sends into WorkspaceEvents for send (see
// FollowEvents), reading a new task from another instance with ctx as p.
func (s *Service) events(ctx context.Context, p access.Principal, send func(*berthv1.WorkspaceEvent) error) func(any) error {
	statuses := map[string]store.TaskStatus{} // of the tasks seen running
	return func(v any) error {
		switch v := v.(type) {
		case event.WorkspaceChanged:
			return send(&berthv1.WorkspaceEvent{Time: timestamppb.New(v.Time), Kind: KindStatus, Workspace: s.Proto(v.Workspace)})
		case event.TaskChanged:
			// The event carries the task's status and progress as stored
			// when it was published: no store read for them.
			ev := &berthv1.WorkspaceEvent{Time: timestamppb.New(s.now()), Kind: "task.status", TaskId: v.TaskID,
				TaskStatus: s.taskProto(&store.TaskRecord{Status: v.Status}).GetStatus()}
			switch {
			case v.Status == store.TaskQueued:
				// A new task, announced whole: as created here, or, from
				// another instance, as read from the store.
				ev.Kind = "task.created"
				rec := v.Created
				if rec == nil {
					found, _, err := s.store.FindTask(ctx, v.TaskID, p.Viewer())
					if err != nil {
						return nil // gone meanwhile: nothing to tell
					}
					rec = found
				}
				ev.Task = s.taskProto(rec)
				return send(ev)
			case statuses[v.TaskID] == v.Status:
				ev.Kind = "task.progress"
			}
			statuses[v.TaskID] = v.Status
			if v.Status.Terminal() {
				delete(statuses, v.TaskID)
			}
			ev.TaskProgress = &berthv1.TaskProgress{Current: v.Progress.Current, Total: v.Progress.Total, Percentage: v.Progress.Percentage, Message: v.Progress.Message}
			return send(ev)
		}
		return nil
	}
}

// Visible returns nil when p may see workspace id, and its not-found error
// otherwise, as Follow checks it: for a transport that must refuse a watch
// before it starts one. Unlike Get it does not count as activity.
func (s *Service) Visible(ctx context.Context, p access.Principal, id string) error {
	_, err := s.store.FindWorkspace(ctx, id, p.Viewer())
	return err
}

// ToProto converts a workspace record to its API message, with the image
// as stored ("" for the server's default); Service.Proto fills in the
// image in effect.
//
// The message and the four it points to are allocated together, in one
// allocation instead of five: every read of a workspace makes one.
func ToProto(w *store.Workspace) *berthv1.Workspace {
	m := new(workspaceMessages)
	m.stats = berthv1.WorkspaceStats{
		TotalTasks:     w.Stats.TotalTasks,
		RunningTasks:   w.Stats.RunningTasks,
		CompletedTasks: w.Stats.CompletedTasks,
		FailedTasks:    w.Stats.FailedTasks,
		CancelledTasks: w.Stats.CancelledTasks,
		TimedOutTasks:  w.Stats.TimedOutTasks,
		DiskUsageMb:    w.DiskUsageMB,
	}
	m.resources = berthv1.ResourceLimits{MemoryMb: w.MemoryMB, Cpus: w.CPUs, Pids: w.Pids}
	m.created, m.updated = timestamp(w.CreatedAt), timestamp(w.UpdatedAt)
	m.workspace = berthv1.Workspace{
		Id:           w.ID,
		OwnerId:      w.OwnerID,
		Name:         w.Name,
		Description:  w.Description,
		Path:         w.Path,
		Status:       StatusToProto(w.Status),
		StatusReason: w.StatusReason,
		GitUrl:       w.GitURL,
		Branch:       w.Branch,
		Tags:         w.Tags,
		Metadata:     w.Metadata,
		Stats:        &m.stats,
		Image:        w.Image,
		ImageId:      w.ImageID,
		ContainerId:  w.ContainerID,
		Resources:    &m.resources,
		CreatedAt:    &m.created,
		UpdatedAt:    &m.updated,
		Managed:      w.Managed,
	}
	return &m.workspace
}

// timestamp is t as timestamppb.New makes it, by value.
func timestamp(t time.Time) timestamppb.Timestamp {
	return timestamppb.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())} // #nosec G115 -- Nanosecond is in [0, 1e9)
}

// workspaceMessages is a Workspace message and the messages it points to,
// for ToProto to allocate at once. The messages are only ever used
// through their pointers, as every message is.
type workspaceMessages struct {
	workspace        berthv1.Workspace
	stats            berthv1.WorkspaceStats
	resources        berthv1.ResourceLimits
	created, updated timestamppb.Timestamp
}

var statusToProto = map[store.WorkspaceStatus]berthv1.WorkspaceStatus{
	store.WorkspaceCreating: berthv1.WorkspaceStatus_WORKSPACE_STATUS_CREATING,
	store.WorkspaceStopped:  berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPED,
	store.WorkspaceStarting: berthv1.WorkspaceStatus_WORKSPACE_STATUS_STARTING,
	store.WorkspaceRunning:  berthv1.WorkspaceStatus_WORKSPACE_STATUS_RUNNING,
	store.WorkspaceStopping: berthv1.WorkspaceStatus_WORKSPACE_STATUS_STOPPING,
	store.WorkspaceError:    berthv1.WorkspaceStatus_WORKSPACE_STATUS_ERROR,
	store.WorkspaceArchived: berthv1.WorkspaceStatus_WORKSPACE_STATUS_ARCHIVED,
}

// StatusToProto converts a stored workspace status to its API enum.
func StatusToProto(s store.WorkspaceStatus) berthv1.WorkspaceStatus {
	return statusToProto[s]
}
