// Package stream builds berth's live views on one rule: catch up from the
// store by seq, then follow the bus, with no gap and no duplicate at the
// seam. Every transport (Connect server streams, SSE, WebSocket) reads
// through the followers here, by way of the task and workspace services, so
// they share one set of guarantees: a slow reader only ever holds a bounded
// bus queue, and when it falls behind it catches up from the store instead
// of slowing the task or other readers.
//
// stream also holds what those transports share beyond the followers: the
// JSON options of their events (JSON), the resolution and re-check of a
// stream's credentials (Auth), their metrics, and what lets one goroutine
// serve a whole stream — Loop, through which a transport flushes each
// batch and runs its heartbeats on the follower's goroutine, and Wheel,
// the one timer of all a transport's streams. A transport that wants no
// goroutine at all while a stream is quiet drives the same followers a
// step at a time instead (Task.Open and TaskFollower.Step, Watcher.Open
// and Watch.Step), woken by the bus.
//
// The events it follows are package event's: a log line, or a task's
// change carrying the task's new status and progress, which followers send
// on as they are, without reading the task again; only a follower that
// starts, or lags, reads the task's state from the store.
package stream

import (
	"context"
	"math"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/berthhq/berth/internal/bus"
	"github.com/berthhq/berth/internal/event"
	"github.com/berthhq/berth/internal/store"
)

const (
	// queueSize bounds a follower's bus queue: beyond it the subscription
	// is marked lagged and the follower resynchronises from the store.
	queueSize = 1024
	// pageSize is how many log lines one store read returns.
	pageSize = 512
)

// Kind says what a TaskEvent carries.
type Kind int

// The kinds of TaskEvent.
const (
	// KindLog is a log line, in Log.
	KindLog Kind = iota + 1
	// KindStatus is a new status of the task, in Status (with its
	// Progress).
	KindStatus
	// KindProgress is new progress of the task (status unchanged), in
	// Progress.
	KindProgress
	// KindEnd says the task is finished and every line up to LastSeq was
	// sent; it is the last event.
	KindEnd
)

// TaskEvent is one event of a task's live log.
type TaskEvent struct {
	Kind     Kind
	Log      store.LogEntry   // KindLog
	Status   store.TaskStatus // KindStatus, KindProgress, KindEnd
	Progress event.Progress   // KindStatus, KindProgress, KindEnd
	LastSeq  int64            // KindEnd: the seq of the task's last line
	// Line is, for a line that came from the bus, the published value
	// every follower of the task shares: a transport keeps its encoding
	// there (Line.Encoded), made once for all of them. It is nil for a
	// line read from the store, which this follower alone sends.
	Line *event.Line
}

// JSON is how every transport that sends JSON (SSE, WebSocket) writes the
// API messages of its events: proto field names, as the RPCs' JSON has
// them, and zero values present, so that a status of 0%, an empty message
// or a first line's fields are there to read rather than implied.
var JSON = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// After is the seq to follow from for a client that already has every
// line up to seq since (the SSE Last-Event-ID, the WebSocket since):
// since+1, except that the largest int64 stays itself rather than wrap
// round to a negative number, which Follow would read as "the whole log".
func After(since int64) int64 {
	if since == math.MaxInt64 {
		return since
	}
	return since + 1
}

// Task follows tasks' logs.
type Task struct {
	Store   *store.Store
	Bus     *bus.Bus
	Metrics *Metrics // may be nil
	// State reads a task's state from the store, as an admin (an error
	// wrapping fault.ErrNotFound when there is no such task): when a
	// follow starts, and when it lagged. Between those, the state comes
	// with the bus's event.TaskChanged.
	State func(ctx context.Context, id string) (event.TaskChanged, error)
}

// Loop is what a transport runs on a follower's goroutine besides sending
// its events, so that one goroutine serves a whole stream: no writer, no
// heartbeat goroutine, no ticker of its own. The zero Loop does nothing.
type Loop struct {
	// Flush, when set, is called whenever the follower has sent all it
	// had and is about to wait: the transport writes a batch of events,
	// then flushes them once.
	Flush func() error
	// Due, when set, wakes the follower to call OnDue (a heartbeat, a
	// re-check of the stream's credentials); a shared timer wheel
	// (Wheel) signals it. An error of OnDue ends the follow with it.
	Due   <-chan struct{}
	OnDue func() error
}

// flush calls Flush, if there is one.
func (l Loop) flush() error {
	if l.Flush == nil {
		return nil
	}
	return l.Flush()
}

// wait flushes what was sent, then waits until ready has a value, calling
// OnDue whenever Due does; it returns ctx's error when ctx ends first.
func (l Loop) wait(ctx context.Context, ready <-chan struct{}) error {
	if err := l.flush(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ready:
			return nil
		case <-l.Due: // a nil Due never fires
			if err := l.OnDue(); err != nil {
				return err
			}
		}
	}
}

// Follow sends task id's log from seq fromSeq on (0 and 1 both mean the
// whole log), then its live lines, status and progress, and, once the task
// is finished and every stored line was sent, a KindEnd event; then it
// returns nil. It returns early with ctx's error when ctx ends, or with the
// first error of send, of loop's hooks or of the store. Follow never
// affects the task. send and loop's hooks run on the caller's goroutine.
//
// The caller checks that its principal may see the task; Follow reads the
// store as an admin.
func (t Task) Follow(ctx context.Context, id string, fromSeq int64, send func(TaskEvent) error, loop Loop) error {
	f, done, err := t.Open(ctx, id, fromSeq, send, nil)
	if err != nil {
		return err
	}
	defer f.Close()
	if done {
		return nil
	}
	return f.Run(ctx, loop)
}

// Run is Follow after Open, for a follower opened without a wake function
// whose task is not done: it waits on the bus, running loop's hooks, and
// steps the follower whenever the task has news, until the task's end was
// sent (nil), ctx ends or a step or hook fails. The caller closes f.
//
// A transport that holds its goroutine for the whole stream (a Connect
// server stream over HTTP/2, which ends when its handler returns) opens the
// follower in a call that returns and waits here, a frame or two under its
// handler: the goroutine's stack, parked for as long as the task is quiet,
// is then small enough for the runtime to shrink.
func (f *TaskFollower) Run(ctx context.Context, loop Loop) error {
	return run(ctx, loop, f.sub, f.Step)
}

// run waits on sub, running loop's hooks, and calls step whenever sub has
// news, until step reports done, ctx ends or a step or hook fails: Run of
// a TaskFollower and of a Watch.
func run(ctx context.Context, loop Loop, sub *bus.Subscription, step func(context.Context) (bool, error)) error {
	for {
		if loop.Due == nil {
			// Nothing to run while waiting: flush, then wait here, a frame
			// less deep than loop.wait.
			if err := loop.flush(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-sub.Ready():
			}
		} else if err := loop.wait(ctx, sub.Ready()); err != nil {
			return err
		}
		if done, err := step(ctx); done || err != nil {
			return err
		}
	}
}

// TaskFollower is Follow taken a step at a time, for a transport that
// holds no goroutine while the task is quiet (the WebSocket's): Open does
// what Follow does before it first waits, and each Step what it does when
// woken. Its steps must not overlap; each may run on a goroutine of its
// own.
type TaskFollower struct {
	f   *follower
	sub *bus.Subscription
	st  event.TaskChanged // the task's state as last sent
}

// Open starts following task id's log from seq fromSeq on, as Follow
// does: it subscribes, checks that the task exists, sends the stored log
// and the task's state, and, when the task is finished already, the end
// — done is then true. send runs on the caller's goroutine.
//
// With a wake function, the bus calls it when the task has news, under
// its lock (see bus.SubscribeFunc): it must not block, only arrange for
// Step to run (not from within wake). With none, Open is Follow's first
// half, and Follow waits on the bus itself.
//
// On an error Open releases what it took and returns no follower;
// otherwise the caller closes the follower (Close) when it is done with
// it, done or not.
func (t Task) Open(ctx context.Context, id string, fromSeq int64, send func(TaskEvent) error, wake func()) (*TaskFollower, bool, error) {
	// Subscribe first, so that every line stored after the catch-up's last
	// read is also on the queue: the seam has no gap.
	f := &TaskFollower{f: &follower{t: t, id: id, last: max(fromSeq, 1) - 1, send: send}}
	if wake != nil {
		f.sub = t.Bus.SubscribeFunc(event.TaskTopic(id), queueSize, wake)
	} else {
		f.sub = t.Bus.Subscribe(event.TaskTopic(id), queueSize)
	}
	done, err := f.open(ctx)
	if err != nil {
		f.Close()
		return nil, false, err
	}
	return f, done, nil
}

// open sends the stored log and the task's state after it, and the end
// when the task is finished: a reader never sees a status or progress
// before the lines it follows. An unknown task sends nothing: it has no
// stored line, and reading its state then fails.
func (f *TaskFollower) open(ctx context.Context) (done bool, err error) {
	if f.st, err = f.f.resync(ctx); err != nil {
		return false, err
	}
	return f.f.settle(ctx, f.st)
}

// Step handles what the bus queued since the last step, if anything: the
// lines and changes in order, or, when the follower lagged, everything
// again from the store. done is true once the task finished and its end
// was sent; the follower then has nothing more to send. Step returns the
// first error of send or of the store; the follow cannot go on after one.
func (f *TaskFollower) Step(ctx context.Context) (done bool, err error) {
	events, lagged := f.sub.Take()
	if lagged {
		// Events were dropped: what was queued is stale. Drop it and read
		// everything again from the store, which holds every line that
		// was published and the task's latest state.
		f.f.t.Metrics.Lagged()
		f.st, err = f.f.resync(ctx)
	} else {
		f.st, err = f.f.events(ctx, events, f.st)
	}
	if err != nil {
		return false, err
	}
	return f.f.settle(ctx, f.st)
}

// Close stops following: the bus subscription ends, and its wake function
// is not called again once Close returned. It is safe to call twice.
func (f *TaskFollower) Close() { f.sub.Close() }

// resync sends the stored lines the reader lacks, then reads the task's
// state, which the caller sends.
func (f *follower) resync(ctx context.Context) (event.TaskChanged, error) {
	if err := f.catchUp(ctx); err != nil {
		return event.TaskChanged{}, err
	}
	return f.t.State(ctx, f.id)
}

// settle sends the task's state st when it changed, and, when the task is
// finished, the end: done is then true.
func (f *follower) settle(ctx context.Context, st event.TaskChanged) (done bool, err error) {
	if err := f.state(st); err != nil {
		return false, err
	}
	if st.Status.Terminal() {
		return true, f.end(ctx, st)
	}
	return false, nil
}

// events handles a batch taken from the bus, each event in turn with the
// state it leaves sent, as if they came one by one: every progress step
// reaches the reader. It returns the task's state as it then knows it; a
// finished task's state is the last the batch sends (the loop sends the
// end).
func (f *follower) events(ctx context.Context, events []any, st event.TaskChanged) (event.TaskChanged, error) {
	var err error
	for _, v := range events {
		if st, err = f.event(ctx, v, st); err != nil {
			return st, err
		}
		if st.Status.Terminal() {
			return st, nil
		}
		if err := f.state(st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// event handles one event from the bus, and returns the task's state as
// it now knows it.
func (f *follower) event(ctx context.Context, v any, st event.TaskChanged) (event.TaskChanged, error) {
	switch v := v.(type) {
	case *event.Line:
		return st, f.log(ctx, TaskEvent{Kind: KindLog, Log: v.LogEntry, Line: v})
	case event.Log:
		return st, f.log(ctx, TaskEvent{Kind: KindLog, Log: v})
	case event.TaskChanged:
		// The lines stored before the change go first, so progress never
		// precedes the lines it describes. The event carries the state as
		// stored when it was published (stored, then published), so it is
		// sent as it is, with no store read.
		if err := f.catchUp(ctx); err != nil {
			return st, err
		}
		// An event of an earlier stage was published before the state
		// was read from the store and is still queued: taken, it would
		// take the reader back.
		if stage(v.Status) >= stage(st.Status) {
			return v, nil
		}
	}
	return st, nil
}

// follower is the state of one Follow.
type follower struct {
	t    Task
	id   string
	last int64 // the seq of the last line sent
	send func(TaskEvent) error

	status   store.TaskStatus // the last status sent
	progress event.Progress   // the last progress sent
}

// catchUp sends every stored line after f.last.
func (f *follower) catchUp(ctx context.Context) error {
	for {
		page, err := f.t.Store.ListTaskLogs(ctx, f.id, f.last, pageSize)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := f.send(TaskEvent{Kind: KindLog, Log: e}); err != nil {
				return err
			}
			f.last = e.Seq
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// log sends a line from the bus: skipped when it was sent already, and
// preceded by the lines missing before it, read from the store (where a
// published line always is).
func (f *follower) log(ctx context.Context, ev TaskEvent) error {
	switch {
	case ev.Log.Seq <= f.last:
		return nil
	case ev.Log.Seq > f.last+1:
		return f.catchUp(ctx)
	}
	if err := f.send(ev); err != nil {
		return err
	}
	f.last = ev.Log.Seq
	return nil
}

// state sends the task's status or progress when it changed.
func (f *follower) state(st event.TaskChanged) error {
	switch {
	case st.Status != f.status:
		f.status, f.progress = st.Status, st.Progress
		return f.send(TaskEvent{Kind: KindStatus, Status: st.Status, Progress: st.Progress})
	case st.Progress != f.progress:
		f.progress = st.Progress
		return f.send(TaskEvent{Kind: KindProgress, Status: st.Status, Progress: st.Progress})
	}
	return nil
}

// end sends the lines stored since the last read (the task may have
// finished between the catch-up and the status), then KindEnd with the
// task's true last seq — not the reader's starting point when it asked to
// start beyond the end.
func (f *follower) end(ctx context.Context, st event.TaskChanged) error {
	if err := f.catchUp(ctx); err != nil {
		return err
	}
	last, err := f.t.Store.LastLogSeq(ctx, f.id)
	if err != nil {
		return err
	}
	return f.send(TaskEvent{Kind: KindEnd, Status: st.Status, Progress: st.Progress, LastSeq: last})
}

// stage orders a task's statuses by its life cycle: queued, then running,
// then finished. A task never goes back a stage.
func stage(s store.TaskStatus) int {
	switch {
	case s == store.TaskQueued:
		return 0
	case s.Terminal():
		return 2
	}
	return 1
}

// Watcher follows bus topics whose latest state can be read again, such as
// a workspace's.
type Watcher struct {
	Bus     *bus.Bus
	Metrics *Metrics // may be nil
}

// Watch sends current's value, then every event of topic on the bus until
// ctx ends (it then returns ctx's error), send or one of loop's hooks
// fails. When the reader falls behind and events are dropped, the queue is
// dropped too and current's value sent again: the reader always ends up
// with the latest state, and memory stays bounded. send and loop's hooks
// run on the caller's goroutine.
func (w Watcher) Watch(ctx context.Context, topic string, current func(context.Context) (any, error), send func(any) error, loop Loop) error {
	f, err := w.Open(ctx, topic, current, send, nil)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Run(ctx, loop)
}

// Run is Watch after Open, for a watch opened without a wake function, as
// TaskFollower.Run is Follow after Open: it waits on the bus, running
// loop's hooks, and steps the watch whenever there is news, until ctx
// ends or a step or hook fails. The caller closes f.
func (f *Watch) Run(ctx context.Context, loop Loop) error {
	return run(ctx, loop, f.sub, func(ctx context.Context) (bool, error) { return false, f.Step(ctx) })
}

// Watch is Watcher.Watch taken a step at a time, as TaskFollower is
// Task.Follow: Open does what Watch does before it first waits, each Step
// what it does when woken. Its steps must not overlap.
type Watch struct {
	w       Watcher
	sub     *bus.Subscription
	current func(context.Context) (any, error)
	send    func(any) error
}

// Open subscribes to topic and sends current's value, as Watch does. With
// a wake function, the bus calls it when the topic has news, under its
// lock (see bus.SubscribeFunc): it must not block, only arrange for Step
// to run. On an error Open releases what it took and returns no Watch;
// otherwise the caller closes it (Close).
func (w Watcher) Open(ctx context.Context, topic string, current func(context.Context) (any, error), send func(any) error, wake func()) (*Watch, error) {
	f := &Watch{w: w, current: current, send: send}
	if wake != nil {
		f.sub = w.Bus.SubscribeFunc(topic, queueSize, wake)
	} else {
		f.sub = w.Bus.Subscribe(topic, queueSize)
	}
	if err := f.resync(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Step sends what the bus queued since the last step, in order, or, when
// the reader lagged, current's value again in place of it. It returns the
// first error of send or current; the watch cannot go on after one.
func (f *Watch) Step(ctx context.Context) error {
	events, lagged := f.sub.Take()
	if lagged {
		f.w.Metrics.Lagged()
		return f.resync(ctx)
	}
	for _, v := range events {
		if err := f.send(v); err != nil {
			return err
		}
	}
	return nil
}

// resync sends current's value.
func (f *Watch) resync(ctx context.Context) error {
	v, err := f.current(ctx)
	if err != nil {
		return err
	}
	return f.send(v)
}

// Close stops watching: the bus subscription ends, and its wake function
// is not called again once Close returned. It is safe to call twice.
func (f *Watch) Close() { f.sub.Close() }
