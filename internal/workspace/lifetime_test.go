package workspace_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/sandbox/process"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/workspace"
)

// afterClose is a log handler that counts the records logged once closed is
// set: the service's complaints about a store it should no longer use.
type afterClose struct {
	slog.Handler
	closed *atomic.Bool
	late   *atomic.Int64
	first  *atomic.Value
}

func (h afterClose) Handle(ctx context.Context, r slog.Record) error {
	if h.closed.Load() {
		h.late.Add(1)
		h.first.CompareAndSwap(nil, r.Message)
	}
	return h.Handler.Handle(ctx, r)
}

// TestRunJoinsItsWork closes the store as soon as Run returns while
// container events keep flowing: Run must have joined everything it
// started (the event watcher above all), so no goroutine of the service is
// left and nothing touches the closed store. Not parallel: it inspects the
// process's goroutines.
func TestRunJoinsItsWork(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	var closeOnce sync.Once
	closeStore := func() { closeOnce.Do(func() { st.Close() }) }
	t.Cleanup(closeStore)
	roots, err := workspace.NewRoots([]string{filepath.Join(dir, "ws")})
	if err != nil {
		t.Fatal(err)
	}
	var closed atomic.Bool
	var late atomic.Int64
	var first atomic.Value
	logger := slog.New(afterClose{Handler: slog.NewTextHandler(io.Discard, nil), closed: &closed, late: &late, first: &first})
	rt := process.New()
	now := time.Now
	svc := workspace.NewService(workspace.Deps{
		Store: st, Roots: roots, Runtime: rt, Bus: bus.New(), Audit: audit.NewRecorder(st, logger, now), Logger: logger, Now: now,
		Containers: workspace.Containers{Image: "unused", Network: "none", IdleTimeout: time.Hour, StopTimeout: time.Second},
	})
	u := &store.User{ID: "11111111-1111-4111-8111-111111111111", Email: "o@example.com", CreatedAt: now(), UpdatedAt: now()}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	p := access.Principal{UserID: u.ID, Role: u.Role}
	w, err := svc.Create(ctx, p, workspace.Spec{Name: "events"})
	if err != nil {
		t.Fatal(err)
	}

	// Events flow: the container goes up and down behind the service's
	// back, and Watch records every move in the store.
	var flood sync.WaitGroup
	stopFlood := make(chan struct{})
	flood.Go(func() {
		for {
			select {
			case <-stopFlood:
				return
			default:
			}
			_ = rt.Start(context.Background(), w.ContainerID)   // #nosec G104 -- the flood only needs events
			_ = rt.Stop(context.Background(), w.ContainerID, 0) // #nosec G104 -- the flood only needs events
		}
	})
	defer func() {
		close(stopFlood)
		flood.Wait()
	}()
	status := func() store.WorkspaceStatus {
		got, err := st.FindWorkspace(ctx, w.ID, store.Viewer{Admin: true})
		if err != nil {
			t.Fatal(err)
		}
		return got.Status
	}

	// Several runs, each stopped while Watch is busy applying events, so
	// that a watcher left behind is likely to be seen; the store closes
	// right after the last one.
	const runs = 10
	for i := range runs {
		before := status()
		runCtx, stopRun := context.WithCancel(ctx)
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			svc.Run(runCtx, time.Hour)
		}()
		// Wait until this run's Watch has applied an event.
		for status() == before {
			select {
			case <-ctx.Done():
				t.Fatal("no container event was ever applied")
			case <-time.After(time.Millisecond):
			}
		}
		stopRun()
		<-ran
		if i == runs-1 {
			closeStore()
			closed.Store(true)
		}
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, fn := range []string{"workspace.(*Service).Watch", "workspace.(*Service).apply"} {
			if strings.Contains(stacks, fn) {
				t.Fatalf("run %d: %s still runs after Run returned", i, fn)
			}
		}
	}
	if n := late.Load(); n > 0 {
		t.Errorf("%d log records after the store closed, e.g. %q", n, first.Load())
	}
}
