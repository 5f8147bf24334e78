package server_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
)

// TestGetStatsSeries reads task series over Connect JSON, as curl would,
// by POST and by GET: bucketed by hour or day, split per workspace or
// user, never counting another user's private workspace unless an admin
// asks for global series; bad ranges and a member's global series are
// refused with clear errors; and a task created through the API is in the
// very next series although series are cached.
func TestGetStatsSeries(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	account := func(email, name string) (id, token string) {
		t.Helper()
		status, body, _ := post(t, srv.URL, "/berth.v1.AuthService/Register", "",
			`{"email":"`+email+`","password":"correct horse battery","name":"`+name+`"}`)
		if status != http.StatusOK {
			t.Fatalf("register %s: %d %v", email, status, body)
		}
		return body["user"].(map[string]any)["id"].(string), body["tokens"].(map[string]any)["access_token"].(string)
	}
	workspace := func(token, name string) string {
		t.Helper()
		status, body, _ := post(t, srv.URL, "/berth.v1.WorkspaceService/CreateWorkspace", token, `{"name":"`+name+`"}`)
		if status != http.StatusOK {
			t.Fatalf("create %s: %d %v", name, status, body)
		}
		return body["workspace"].(map[string]any)["id"].(string)
	}
	_, rootToken := account("root@example.com", "Root") // the first account is the admin
	annID, annToken := account("ann@example.com", "Ann")
	bobID, bobToken := account("bob@example.com", "Bob")
	alpha := workspace(annToken, "alpha")
	private := workspace(bobToken, "private")

	// Finished tasks at chosen times, written straight into the store (a
	// task made through the API is created now and runs).
	day0 := time.Now().UTC().Truncate(24 * time.Hour).Add(-10 * 24 * time.Hour)
	day1 := day0.Add(24 * time.Hour)
	st, err := store.Open(t.Context(), filepath.Join(srv.DataDir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []struct {
		ws, by string
		at     time.Duration
		status store.TaskStatus
		usd    float64
	}{
		{alpha, annID, 10*time.Hour + 15*time.Minute, store.TaskSucceeded, 0.5},
		{alpha, annID, 10*time.Hour + 45*time.Minute, store.TaskFailed, 0.25},
		{alpha, annID, 33 * time.Hour, store.TaskCancelled, 0},
		{private, bobID, 10*time.Hour + 30*time.Minute, store.TaskSucceeded, 8},
	} {
		created, done := day0.Add(tr.at), day0.Add(tr.at+time.Minute)
		if err := st.CreateTaskRecord(t.Context(), &store.TaskRecord{
			ID: uuid.NewString(), WorkspaceID: tr.ws, CreatedBy: tr.by, Type: store.TaskClaudeChat, Status: tr.status,
			Priority: store.TaskPriorityMedium, Prompt: "add a test", Tags: []string{}, Metadata: map[string]string{},
			CostUSD: tr.usd, CreatedAt: created, StartedAt: &created, CompletedAt: &done,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	type point struct {
		BucketStart   string            `json:"bucket_start"`
		Group         string            `json:"group"`
		GroupName     string            `json:"group_name"`
		TasksByStatus map[string]string `json:"tasks_by_status"` // int64: a string in proto JSON
		CostUSD       float64           `json:"cost_usd"`
	}
	type series struct {
		Points []point `json:"points"`
		Global bool    `json:"global"`
	}
	stamp := func(t time.Time) string { return t.Format(time.RFC3339) }
	decode := func(what string, status int, body map[string]any) series {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("%s: %d %v", what, status, body)
		}
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		var s series
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	ask := func(token, body string) series {
		t.Helper()
		status, res, _ := post(t, srv.URL, "/berth.v1.StatsService/GetStatsSeries", token, body)
		return decode(body, status, res)
	}
	want := func(what string, got, want series) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
		}
	}
	two := `"start":"` + stamp(day0.Add(5*time.Hour)) + `","end":"` + stamp(day0.Add(48*time.Hour)) + `"`

	want("ann by day (start rounded down; zero values present)", ask(annToken, `{`+two+`}`), series{Points: []point{
		{BucketStart: stamp(day0), TasksByStatus: map[string]string{"succeeded": "1", "failed": "1"}, CostUSD: 0.75},
		{BucketStart: stamp(day1), TasksByStatus: map[string]string{"cancelled": "1"}},
	}})
	want("ann by hour and workspace", ask(annToken, `{`+two+`,"bucket":"STATS_BUCKET_HOUR","group":"STATS_GROUP_WORKSPACE"}`), series{Points: []point{
		{BucketStart: stamp(day0.Add(10 * time.Hour)), Group: alpha, GroupName: "alpha", TasksByStatus: map[string]string{"succeeded": "1", "failed": "1"}, CostUSD: 0.75},
		{BucketStart: stamp(day0.Add(33 * time.Hour)), Group: alpha, GroupName: "alpha", TasksByStatus: map[string]string{"cancelled": "1"}},
	}})
	want("bob by day and user", ask(bobToken, `{`+two+`,"group":"STATS_GROUP_USER"}`), series{Points: []point{
		{BucketStart: stamp(day0), Group: bobID, GroupName: "Bob", TasksByStatus: map[string]string{"succeeded": "1"}, CostUSD: 8},
	}})
	want("the admin's own series: no workspaces of its own", ask(rootToken, `{`+two+`}`), series{Points: []point{}})
	want("global, by the admin", ask(rootToken, `{"global":true,`+two+`}`), series{Global: true, Points: []point{
		{BucketStart: stamp(day0), TasksByStatus: map[string]string{"succeeded": "2", "failed": "1"}, CostUSD: 8.75},
		{BucketStart: stamp(day1), TasksByStatus: map[string]string{"cancelled": "1"}},
	}})

	// Connect GET, as the RPC has no side effects.
	q := url.Values{"encoding": {"json"}, "message": {`{` + two + `,"group":"STATS_GROUP_USER"}`}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/berth.v1.StatsService/GetStatsSeries?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+annToken)
	status, body, _ := do(t, req)
	want("ann by GET", decode("GET", status, body), series{Points: []point{
		{BucketStart: stamp(day0), Group: annID, GroupName: "Ann", TasksByStatus: map[string]string{"succeeded": "1", "failed": "1"}, CostUSD: 0.75},
		{BucketStart: stamp(day1), Group: annID, GroupName: "Ann", TasksByStatus: map[string]string{"cancelled": "1"}},
	}})

	refused := []struct {
		what, token, body string
		status            int
		code, message     string
	}{
		{"global by a member", annToken, `{"global":true,` + two + `}`, http.StatusForbidden, "permission_denied", "only admins"},
		{"no start", annToken, `{}`, http.StatusBadRequest, "invalid_argument", "start"},
		{"end before start", annToken, `{"start":"` + stamp(day1) + `","end":"` + stamp(day0) + `"}`, http.StatusBadRequest, "invalid_argument", "end: must not be before start"},
		{"a start after now, with no end", annToken, `{"start":"` + stamp(time.Now().Add(48*time.Hour)) + `"}`,
			http.StatusBadRequest, "invalid_argument", "start: must not be later than now"},
		{"32 days of hours", annToken, `{"start":"` + stamp(day0) + `","end":"` + stamp(day0.Add(32*24*time.Hour)) + `","bucket":"STATS_BUCKET_HOUR"}`,
			http.StatusBadRequest, "invalid_argument", "at most 31 days after start for hour buckets"},
		{"367 days of days", annToken, `{"start":"` + stamp(day0.Add(-367*24*time.Hour)) + `","end":"` + stamp(day0) + `"}`,
			http.StatusBadRequest, "invalid_argument", "at most 366 days after start for day buckets"},
		{"367 days until now", annToken, `{"start":"` + stamp(time.Now().Add(-367*24*time.Hour)) + `"}`,
			http.StatusBadRequest, "invalid_argument", "at most 366 days"},
		{"an unknown bucket", annToken, `{` + two + `,"bucket":7}`, http.StatusBadRequest, "invalid_argument", "bucket"},
		{"no token", "", `{` + two + `}`, http.StatusUnauthorized, "unauthenticated", ""},
	}
	for _, r := range refused {
		status, body, _ := post(t, srv.URL, "/berth.v1.StatsService/GetStatsSeries", r.token, r.body)
		msg, _ := body["message"].(string)
		if status != r.status || body["code"] != r.code || !strings.Contains(msg, r.message) {
			t.Errorf("%s: %d %v, want %d %s with %q", r.what, status, body, r.status, r.code, r.message)
		}
	}

	// A range ending now (no end), asked twice around a task created
	// through the API: the second answer counts it, in today's bucket.
	open := `{"start":"` + stamp(day0) + `","group":"STATS_GROUP_WORKSPACE"}`
	before := ask(annToken, open)
	if len(before.Points) != 2 {
		t.Fatalf("before the new task: %+v", before)
	}
	c := srv.clients(protocols[0])
	ctx := as(t.Context(), annToken)
	res, err := c.Task.CreateTask(ctx, &berthv1.CreateTaskRequest{
		WorkspaceId: alpha, Type: berthv1.TaskType_TASK_TYPE_GIT_OPERATION,
		Git: &berthv1.GitOperation{Operation: berthv1.GitOperationType_GIT_OPERATION_TYPE_STATUS},
	})
	if err != nil {
		t.Fatal(err)
	}
	created := res.GetTask().GetCreatedAt().AsTime().UTC().Truncate(24 * time.Hour)
	after := ask(annToken, open)
	if len(after.Points) != 3 || !reflect.DeepEqual(after.Points[:2], before.Points) {
		t.Fatalf("after the new task:\n got  %+v\n before %+v", after, before)
	}
	last := after.Points[2]
	if last.BucketStart != stamp(created) || last.Group != alpha || len(last.TasksByStatus) != 1 || slices.Collect(maps.Values(last.TasksByStatus))[0] != "1" {
		t.Errorf("the new task's point = %+v, want 1 task on %s", last, stamp(created))
	}
	waitTask(t, c, ctx, res.GetTask().GetId(), nil)
}
