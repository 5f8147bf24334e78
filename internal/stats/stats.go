// Package stats answers StatsService: counts over the workspaces and tasks a
// caller can see, or over the whole server for admins.
package stats

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service counts.
type Service struct {
	store  *store.Store
	counts *cache.Cache // nil: every Get counts in the store
	now    func() time.Time
	// perWorkspace reads WorkspaceCounts' entries of counts decoded; nil
	// with counts.
	perWorkspace *cache.Decoded[store.WorkspaceStats]
}

// NewService returns a Service over st. With counts (Valkey-backed across
// instances, or an in-process LRU; nil counts in the store on every Get),
// Get keeps its counts there. Entries live under a generation, "gen", that
// the caller must invalidate after every write to the tables the counts
// come from (users, workspaces, workspace_members, tasks): store.OnWrite
// does it before the writing call returns, so no count older than a
// completed write is served.
func NewService(st *store.Store, counts *cache.Cache) *Service {
	s := &Service{store: st, counts: counts, now: time.Now}
	if counts != nil {
		s.perWorkspace = cache.NewDecoded(counts, decodeWorkspaceStats)
	}
	return s
}

// Generation is the cache key to invalidate after such a write.
const Generation = "gen"

// Get counts what p can see, or everything when global (admins only).
func (s *Service) Get(ctx context.Context, p access.Principal, global bool) (*store.Stats, error) {
	if global && !p.IsAdmin() {
		return nil, fault.New(fault.ErrPermissionDenied, "only admins can read global stats; leave global unset for your own")
	}
	// "Own" stats count the caller's own and shared workspaces, even for
	// an admin, who could see every workspace.
	count := func(ctx context.Context) (*store.Stats, error) {
		return s.store.CountStats(ctx, store.Viewer{UserID: p.UserID}, global)
	}
	if s.counts == nil {
		return count(ctx)
	}
	gen, err := s.counts.Get(ctx, Generation, func(context.Context) ([]byte, error) { return []byte(rand.Text()), nil })
	if err != nil {
		return nil, err
	}
	scope := "user:" + p.UserID
	if global {
		scope = "global"
	}
	b, err := s.counts.Get(ctx, string(gen)+":"+scope, func(ctx context.Context) ([]byte, error) {
		st, err := count(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(st)
	})
	if err != nil {
		return nil, err
	}
	var st store.Stats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// SeriesRequest is what Series counts: the range from Start (rounded down
// to its bucket) to End (zero: now), in buckets of Bucket (an hour or a
// day), split by Group; Global covers the whole server.
type SeriesRequest struct {
	Global     bool
	Start, End time.Time
	Bucket     time.Duration
	Group      store.SeriesGroup
}

// The buckets of a series and the longest range each may cover, so that a
// series has at most a few hundred buckets per group.
const (
	Hour = time.Hour
	Day  = 24 * time.Hour

	maxHourRange = 31 * Day
	maxDayRange  = 366 * Day
)

// Series buckets the tasks p can see, or every task when global (admins
// only), by the time they were created. Like Get, a caller's own series
// covers the caller's own and shared workspaces, even for an admin.
func (s *Service) Series(ctx context.Context, p access.Principal, req SeriesRequest) ([]store.SeriesPoint, error) {
	if req.Global && !p.IsAdmin() {
		return nil, fault.New(fault.ErrPermissionDenied, "only admins can read global stats; leave global unset for your own")
	}
	var limit time.Duration
	switch req.Bucket {
	case Hour:
		limit = maxHourRange
	case Day:
		limit = maxDayRange
	default:
		return nil, fault.Invalid("bucket", fmt.Sprintf("must be an hour or a day, not %v", req.Bucket))
	}
	open := req.End.IsZero()
	end := req.End
	if open {
		end = s.now()
	}
	if end.Before(req.Start) {
		if open {
			return nil, fault.Invalid("start", "must not be later than now, where a range without an end ends")
		}
		return nil, fault.Invalid("end", "must not be before start")
	}
	// The limit is on the range as asked, before start is rounded down,
	// so "the last 366 days" ending now is allowed.
	if end.Sub(req.Start) > limit {
		return nil, fault.Invalid("end", fmt.Sprintf("must be at most %d days after start for %s buckets",
			limit/Day, map[time.Duration]string{Hour: "hour", Day: "day"}[req.Bucket]))
	}
	f := store.SeriesFilter{
		Viewer: store.Viewer{UserID: p.UserID}, Global: req.Global,
		Start: req.Start, End: end, Bucket: req.Bucket, Group: req.Group,
	}
	count := func(ctx context.Context) ([]store.SeriesPoint, error) { return s.store.TaskSeries(ctx, f) }
	if s.counts == nil {
		return count(ctx)
	}
	gen, err := s.counts.Get(ctx, Generation, func(context.Context) ([]byte, error) { return []byte(rand.Text()), nil })
	if err != nil {
		return nil, err
	}
	scope := "user:" + p.UserID
	if req.Global {
		scope = "global"
	}
	// A series that ends now is kept under "now", not under the instant:
	// every write to tasks retires the generation, so until one happens
	// no task was created after the instant it was counted at, and the
	// counts still hold for a later now. (A range that ends now starts no
	// later than that, so start keys the rest.) Start is keyed rounded
	// down, as it is counted, so "the last 7 days" asked a second later
	// is the same entry.
	endKey := "now"
	if !open {
		endKey = fmt.Sprint(end.UnixMicro())
	}
	key := fmt.Sprintf("%s:series:%s:%d:%s:%d:%d", gen, scope, req.Start.Truncate(req.Bucket).UnixMicro(), endKey, req.Bucket.Microseconds(), req.Group)
	b, err := s.counts.Get(ctx, key, func(ctx context.Context) ([]byte, error) {
		pts, err := count(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(pts)
	})
	if err != nil {
		return nil, err
	}
	var pts []store.SeriesPoint
	if err := json.Unmarshal(b, &pts); err != nil {
		return nil, err
	}
	return pts, nil
}

// Handler serves berth.v1.StatsService.
type Handler struct {
	svc *Service
}

var _ berthv1connect.StatsServiceHandler = (*Handler)(nil)

// NewHandler returns the StatsService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// GetStats implements berthv1connect.StatsServiceHandler.
func (h *Handler) GetStats(ctx context.Context, req *berthv1.GetStatsRequest) (*berthv1.GetStatsResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	st, err := h.svc.Get(ctx, p, req.GetGlobal())
	if err != nil {
		return nil, err
	}
	out := &berthv1.GetStatsResponse{
		Global:             req.GetGlobal(),
		Workspaces:         st.Workspaces,
		WorkspacesByStatus: make(map[string]int64, len(st.WorkspacesByStatus)),
		Tasks:              st.Tasks,
		TasksByStatus:      st.TasksByStatus,
		TotalCostUsd:       st.TotalCostUSD,
	}
	if req.GetGlobal() {
		out.Users = &st.Users
	}
	for status, n := range st.WorkspacesByStatus {
		out.WorkspacesByStatus[string(status)] = n
	}
	return out, nil
}

// GetStatsSeries implements berthv1connect.StatsServiceHandler.
func (h *Handler) GetStatsSeries(ctx context.Context, req *berthv1.GetStatsSeriesRequest) (*berthv1.GetStatsSeriesResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	sr := SeriesRequest{Global: req.GetGlobal(), Start: req.GetStart().AsTime(), Bucket: Day}
	if err := req.GetStart().CheckValid(); err != nil {
		return nil, fault.Invalid("start", "must be a valid timestamp")
	}
	if req.End != nil {
		if err := req.GetEnd().CheckValid(); err != nil {
			return nil, fault.Invalid("end", "must be a valid timestamp")
		}
		sr.End = req.GetEnd().AsTime()
		if sr.End.IsZero() {
			// The zero time.Time is year 1; keep "empty means now" for
			// nothing but an absent end.
			return nil, fault.Invalid("end", "must not be before start")
		}
	}
	if req.GetBucket() == berthv1.StatsBucket_STATS_BUCKET_HOUR {
		sr.Bucket = Hour
	}
	switch req.GetGroup() {
	case berthv1.StatsGroup_STATS_GROUP_USER:
		sr.Group = store.SeriesByUser
	case berthv1.StatsGroup_STATS_GROUP_WORKSPACE:
		sr.Group = store.SeriesByWorkspace
	}
	pts, err := h.svc.Series(ctx, p, sr)
	if err != nil {
		return nil, err
	}
	out := &berthv1.GetStatsSeriesResponse{Global: req.GetGlobal(), Points: make([]*berthv1.StatsPoint, len(pts))}
	for i, pt := range pts {
		out.Points[i] = &berthv1.StatsPoint{
			BucketStart:   timestamppb.New(pt.BucketStart),
			Group:         pt.Group,
			GroupName:     pt.GroupName,
			TasksByStatus: pt.TasksByStatus,
			CostUsd:       pt.CostUSD,
		}
	}
	return out, nil
}
