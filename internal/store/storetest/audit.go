package storetest

import (
	"testing"

	"github.com/google/uuid"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/store"
)

var auditTests = []test{
	{"AppendAndList", testAppendAudit},
	{"Filters", testAuditFilters},
	{"Paging", testAuditPaging},
}

// audit records an audit event with defaults, as changed by mods.
func (e *env) audit(mods ...func(*store.AuditEvent)) *store.AuditEvent {
	e.t.Helper()
	ev := &store.AuditEvent{
		ID:            uuid.NewString(),
		Time:          e.tick(),
		Action:        "auth.login",
		Outcome:       "success",
		ActorID:       uuid.NewString(),
		TargetType:    "user",
		TargetID:      uuid.NewString(),
		SourceAddress: "198.51.100.4",
		RequestID:     "req-" + uuid.NewString()[:8],
		Details:       map[string]string{"method": "password"},
	}
	for _, m := range mods {
		m(ev)
	}
	if err := e.s.AppendAudit(e.ctx, ev); err != nil {
		e.t.Fatalf("append audit event: %v", err)
	}
	return ev
}

// listAudit lists audit events and fails the test on an error.
func (e *env) listAudit(f store.AuditFilter) ([]*store.AuditEvent, int64) {
	e.t.Helper()
	evs, total, err := e.s.ListAuditEvents(e.ctx, f)
	if err != nil {
		e.t.Fatalf("list audit events %+v: %v", f, err)
	}
	if evs == nil {
		e.t.Fatalf("list audit events %+v: nil slice", f)
	}
	return evs, total
}

func testAppendAudit(t *testing.T, e *env) {
	evs, total := e.listAudit(store.AuditFilter{})
	equal(t, "empty log", evs, []*store.AuditEvent{})
	equal(t, "empty total", total, 0)

	first := e.audit()
	bare := e.audit(func(ev *store.AuditEvent) {
		ev.Outcome, ev.ActorID, ev.TargetType, ev.TargetID, ev.SourceAddress, ev.RequestID, ev.Details =
			"failure", "", "", "", "", "", nil
	})
	equal(t, "nil details written back", bare.Details, map[string]string{})
	evs, total = e.listAudit(store.AuditFilter{})
	equal(t, "newest first", evs, []*store.AuditEvent{bare, first})
	equal(t, "total", total, 2)

	dup := *first
	dup.Details = nil
	wantFault(t, e.s.AppendAudit(e.ctx, &dup), fault.ErrConflict)
}

func testAuditFilters(t *testing.T, e *env) {
	alice, bob := uuid.NewString(), uuid.NewString()
	key := uuid.NewString()
	login := e.audit(func(ev *store.AuditEvent) { ev.ActorID = alice })
	create := e.audit(func(ev *store.AuditEvent) {
		ev.Action, ev.ActorID, ev.TargetType, ev.TargetID = "api_key.create", alice, "api_key", key
	})
	bobLogin := e.audit(func(ev *store.AuditEvent) { ev.ActorID = bob })
	revoke := e.audit(func(ev *store.AuditEvent) {
		ev.Action, ev.ActorID, ev.TargetType, ev.TargetID = "api_key.revoke", bob, "api_key", key
	})

	tests := []struct {
		name string
		f    store.AuditFilter
		want []*store.AuditEvent
	}{
		{"all", store.AuditFilter{}, []*store.AuditEvent{revoke, bobLogin, create, login}},
		{"action", store.AuditFilter{Action: "auth.login"}, []*store.AuditEvent{bobLogin, login}},
		{"actor", store.AuditFilter{ActorID: alice}, []*store.AuditEvent{create, login}},
		{"target", store.AuditFilter{TargetID: key}, []*store.AuditEvent{revoke, create}},
		{"action and actor", store.AuditFilter{Action: "auth.login", ActorID: bob}, []*store.AuditEvent{bobLogin}},
		{"all three", store.AuditFilter{Action: "api_key.revoke", ActorID: bob, TargetID: key}, []*store.AuditEvent{revoke}},
		{"exact, not a prefix", store.AuditFilter{Action: "api_key"}, []*store.AuditEvent{}},
		{"no match", store.AuditFilter{ActorID: uuid.NewString()}, []*store.AuditEvent{}},
	}
	for _, tt := range tests {
		got, total := e.listAudit(tt.f)
		equal(t, tt.name, got, tt.want)
		equal(t, tt.name+": total", total, int64(len(tt.want)))
	}
}

func testAuditPaging(t *testing.T, e *env) {
	older := []*store.AuditEvent{e.audit(), e.audit(), e.audit()}
	// Two events at one instant sort by id, descending.
	at := e.tick()
	a := e.audit(func(ev *store.AuditEvent) { ev.ID, ev.Time = "a-"+ev.ID, at })
	z := e.audit(func(ev *store.AuditEvent) { ev.ID, ev.Time = "z-"+ev.ID, at })
	all := []*store.AuditEvent{z, a, older[2], older[1], older[0]}

	got, total := e.listAudit(store.AuditFilter{})
	equal(t, "all", got, all)
	equal(t, "total", total, 5)
	var paged []*store.AuditEvent
	for offset := 0; offset < 6; offset += 2 {
		page, total := e.listAudit(store.AuditFilter{Offset: offset, Limit: 2})
		equal(t, "total of a page", total, 5)
		paged = append(paged, page...)
	}
	equal(t, "pages", paged, all)
	page, total := e.listAudit(store.AuditFilter{Action: "auth.login", Offset: 4, Limit: 10})
	equal(t, "last page", page, all[4:])
	equal(t, "total of the last page", total, 5)
	page, _ = e.listAudit(store.AuditFilter{Offset: 9})
	equal(t, "past the end", page, []*store.AuditEvent{})
}
