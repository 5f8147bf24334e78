package tasklog_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
)

// waitFor polls cond until it holds, failing the test a minute before its
// own deadline (or after five minutes when it has none).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-time.Minute)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLingerEndsAtFlushLines: a writer that would linger an hour writes at
// once when FlushLines entries are waiting, and again for the next
// FlushLines.
func TestLingerEndsAtFlushLines(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{FlushEvery: time.Hour, FlushLines: 10})
	for round := 1; round <= 2; round++ {
		for i := range 10 {
			w.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("round %d line %d", round, i), nil)
		}
		waitFor(t, fmt.Sprintf("round %d stored", round), func() bool { return w.LastSeq() == int64(10*round) })
	}
	must(t, w.Close())
	equal(t, "stored", len(stored(t, s, tr.ID)), 20)
}

// TestCloseEndsTheLinger: Close writes what is waiting at once, however
// long the linger.
func TestCloseEndsTheLinger(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	w := tasklog.NewWriter(s, nil, tr.ID, 1, tasklog.Options{FlushEvery: time.Hour})
	w.Log(store.LogInfo, store.LogStdout, "one", nil)
	w.Log(store.LogInfo, store.LogStdout, "two", nil)
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	var err error
	waitFor(t, "Close to return", func() bool {
		select {
		case err = <-closed:
			return true
		default:
			return false
		}
	})
	must(t, err)
	equal(t, "messages", messages(t, s, tr.ID), []string{"one", "two"})
}

// TestConcurrentWritersGroupCommit: goroutines logging at once into one
// writer, with no linger, so that lines keep arriving while each write
// runs: the store holds 1…n, each goroutine's lines in the order it logged
// them, and the bus delivers every entry once, in seq order, only once it
// is stored.
func TestConcurrentWritersGroupCommit(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	tr := newTask(t, s, true)
	b := bus.New()
	const writers, each = 8, 1500
	sub := b.Subscribe("task:"+tr.ID, writers*each)
	w := tasklog.NewWriter(s, b, tr.ID, 1, tasklog.Options{})
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				w.Log(store.LogInfo, store.LogStdout, fmt.Sprintf("%d %d", g, i), nil)
			}
		})
	}
	for want := int64(1); want <= writers*each; want++ {
		v, err := sub.Recv(t.Context())
		must(t, err)
		e, ok := v.(*event.Line)
		if !ok || e.Seq != want {
			t.Fatalf("published %+v, want seq %d", e, want)
		}
		if w.LastSeq() < e.Seq {
			t.Fatalf("entry %d published before the writer counted it stored (last seq %d)", e.Seq, w.LastSeq())
		}
	}
	wg.Wait()
	must(t, w.Close())
	if sub.Lagged() {
		t.Fatal("the subscriber lagged")
	}
	next := make([]int, writers)
	for _, m := range messages(t, s, tr.ID) {
		gs, is, _ := strings.Cut(m, " ")
		g, _ := strconv.Atoi(gs)
		i, _ := strconv.Atoi(is)
		if i != next[g] {
			t.Fatalf("writer %d: line %d stored where line %d was due", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		equal(t, fmt.Sprintf("lines of writer %d", g), n, each)
	}
}
