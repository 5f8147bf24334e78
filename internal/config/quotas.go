package config

import (
	"log/slog"
	"strconv"
)

// Quotas bound what one user may hold at once, so that one account cannot
// exhaust the server for everyone else, and how many connections the main
// listener accepts. For each per-user quota 0 means no cap.
type Quotas struct {
	// MaxStreamsPerUser caps the long-lived streams one user holds open on
	// all transports together: SSE streams, the Connect server streams
	// (StreamTaskLogs, WatchWorkspace) and WebSocket connections and their
	// subscriptions. With Valkey the count holds across instances.
	MaxStreamsPerUser int64
	// MaxConnections caps the connections the main listener holds open at
	// once; 0 derives it from the process's descriptor limit, with room
	// kept for the store, Valkey, task processes and log files. Streams may
	// use at most three quarters of it, so /health, /ready and ordinary
	// calls still get through while they are all taken.
	MaxConnections int64
	// MaxRunningPerUser caps the tasks of one user (their creator) running
	// at once on the runners sharing a store, so that another user's task
	// starts while one user's tasks wait. Keep it below
	// Tasks.MaxRunning.
	MaxRunningPerUser int64
	// MaxQueuedPerUser caps the tasks of one user waiting in the queue;
	// CreateTask is refused beyond it.
	MaxQueuedPerUser int64
	// MaxWorkspacesPerUser caps the workspaces one member or viewer owns
	// (archived ones included: they keep their rows and directories);
	// CreateWorkspace is refused beyond it. Admins are exempt.
	MaxWorkspacesPerUser int64
	// MaxTaskLogBytes caps the bytes of one task's log messages. Past it
	// the task keeps running, its further output is dropped, one system
	// line says so, and the task's result notes the truncation.
	MaxTaskLogBytes int64
}

func defaultQuotas() Quotas {
	return Quotas{
		MaxStreamsPerUser:    64,
		MaxRunningPerUser:    2,
		MaxQueuedPerUser:     100,
		MaxWorkspacesPerUser: 50,
		MaxTaskLogBytes:      16 << 20,
	}
}

func (s *flagSet) addQuotaFlags(c *Config) {
	q := &c.Quotas
	s.section("Quotas (per user; 0 = no cap)")
	s.add(&int64Value{&q.MaxStreamsPerUser}, "max-streams-per-user", "count", strconv.FormatInt(q.MaxStreamsPerUser, 10),
		"Most live streams one user holds open, SSE, Connect server streams and WebSocket connections and subscriptions together (across instances with --valkey-url). Opening one more is refused with 429 / RESOURCE_EXHAUSTED.")
	s.add(&int64Value{&q.MaxConnections}, "max-connections", "count", strconv.FormatInt(q.MaxConnections, 10),
		"Most connections the main listener holds open (0 = derived from the descriptor limit, RLIMIT_NOFILE, minus room for the store and tasks); streams may take at most 3/4 of them, so /health and ordinary calls still get through. Connections over the cap get 503 with Retry-After.")
	s.add(&int64Value{&q.MaxRunningPerUser}, "max-running-per-user", "count", strconv.FormatInt(q.MaxRunningPerUser, 10),
		"Most tasks of one user running at once; other users' tasks start first. Keep it below --max-running-tasks.")
	s.add(&int64Value{&q.MaxQueuedPerUser}, "max-queued-per-user", "count", strconv.FormatInt(q.MaxQueuedPerUser, 10),
		"Most tasks of one user waiting in the queue; CreateTask is refused beyond it.")
	s.add(&int64Value{&q.MaxWorkspacesPerUser}, "max-workspaces-per-user", "count", strconv.FormatInt(q.MaxWorkspacesPerUser, 10),
		"Most workspaces one user owns, archived ones included; CreateWorkspace is refused beyond it. Admins are exempt.")
	s.add(&bytesValue[int64]{&q.MaxTaskLogBytes}, "max-task-log-bytes", "bytes", strconv.FormatInt(q.MaxTaskLogBytes, 10),
		"Most bytes of log messages one task stores (16777216 is 16MiB). Past it the task keeps running, further output is dropped, one system line says so and the result notes it.")
}

func (c *Config) checkQuotas(p *problems) {
	q := &c.Quotas
	for _, v := range []struct {
		flag string
		n    int64
	}{
		{"max-streams-per-user", q.MaxStreamsPerUser},
		{"max-connections", q.MaxConnections},
		{"max-running-per-user", q.MaxRunningPerUser},
		{"max-queued-per-user", q.MaxQueuedPerUser},
		{"max-workspaces-per-user", q.MaxWorkspacesPerUser},
		{"max-task-log-bytes", q.MaxTaskLogBytes},
	} {
		if v.n < 0 {
			p.add(v.flag, strconv.FormatInt(v.n, 10), "want 0 (no cap) or more")
		}
	}
	if q.MaxConnections > 0 && q.MaxConnections < 16 {
		p.add("max-connections", strconv.FormatInt(q.MaxConnections, 10), "want 0 (derived) or at least 16, so health checks and calls have room")
	}
	if q.MaxTaskLogBytes > 0 && q.MaxTaskLogBytes < 1024 {
		p.add("max-task-log-bytes", strconv.FormatInt(q.MaxTaskLogBytes, 10), "want 0 (no cap) or at least 1024")
	}
}

// quotaLogAttrs are the quotas in the start-up log, under their flag names.
func (c *Config) quotaLogAttrs() []slog.Attr {
	q := &c.Quotas
	return []slog.Attr{
		slog.Int64("max-streams-per-user", q.MaxStreamsPerUser),
		slog.Int64("max-connections", q.MaxConnections),
		slog.Int64("max-running-per-user", q.MaxRunningPerUser),
		slog.Int64("max-queued-per-user", q.MaxQueuedPerUser),
		slog.Int64("max-workspaces-per-user", q.MaxWorkspacesPerUser),
		slog.Int64("max-task-log-bytes", q.MaxTaskLogBytes),
	}
}
