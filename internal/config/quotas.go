package config

import "strconv"

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

func (s *flagSet) addQuotaFlags(c *Config) {
	q := &c.Quotas
	s.section("Quotas (per user; 0 = no cap)")
	s.count(&q.MaxStreamsPerUser, "max-streams-per-user", "count", 64,
		"Most live streams one user holds open: SSE, Connect server streams and WebSocket connections and subscriptions on one count, across instances with `--valkey-url` (see \"Quotas and capacity\"). Opening one more is refused with 429 / `RESOURCE_EXHAUSTED`. `0` = no cap.")
	s.count(&q.MaxConnections, "max-connections", "count", 0,
		"Most connections the main listener holds open; `0` derives it from the descriptor limit (`RLIMIT_NOFILE`) minus room for the store, Valkey and tasks. Streams may take at most ¾ of them, so `/health` and ordinary calls still get through. Connections over the cap get 503 with `Retry-After`.",
	).DefValue = "0 (derived)"
	s.count(&q.MaxRunningPerUser, "max-running-per-user", "count", 2,
		"Most tasks of one user running at once, across instances; the runner passes over a user at the cap, so other users' tasks start first. Keep it below `--max-running-tasks`. `0` = no cap.")
	s.count(&q.MaxQueuedPerUser, "max-queued-per-user", "count", 100,
		"Most tasks of one user waiting in the queue; `CreateTask` is refused beyond it. `0` = no cap.")
	s.count(&q.MaxWorkspacesPerUser, "max-workspaces-per-user", "count", 50,
		"Most workspaces one user owns, archived ones included; `CreateWorkspace` is refused beyond it. Admins are exempt. `0` = no cap.")
	bytesFlag(s, &q.MaxTaskLogBytes, "max-task-log-bytes", 16<<20,
		"Most bytes of log messages one task stores (16777216 is 16 MiB). Past it the task keeps running, further output is dropped, one system line says so and the result notes it. `0` = no cap.")
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
