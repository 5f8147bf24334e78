// Package event is berth's vocabulary of live events: what the bus carries
// between the packages that change things (task, workspace, tasklog) and the
// ones that follow them (stream, the transports, the Valkey bridge), and the
// bus topics they travel on.
//
// An event carries the state its followers send on, so that a thousand
// followers of a task do not read the task from the store a thousand times
// per change; the store stays the source of truth for catching up (stored,
// then published: a follower that lags or starts late reads the store).
package event

import (
	"strings"
	"time"

	"github.com/berthhq/berth/internal/store"
)

// The prefixes of the bus topics, which are also the stream ticket targets
// and WebSocket channel names of the same streams.
const (
	taskPrefix      = "task:"
	workspacePrefix = "workspace:"
)

// TaskTopic is the bus topic of task id's events: its log lines and its
// changes.
func TaskTopic(id string) string { return taskPrefix + id }

// WorkspaceTopic is the bus topic of workspace id's events: its own
// changes and its tasks' changes.
func WorkspaceTopic(id string) string { return workspacePrefix + id }

// ParseTopic splits a topic (or channel, or ticket target) into its kind,
// "task" or "workspace", and id; ok is false for anything else, an empty
// id included.
func ParseTopic(topic string) (kind, id string, ok bool) {
	for _, k := range []string{taskPrefix, workspacePrefix} {
		if rest, found := strings.CutPrefix(topic, k); found && rest != "" {
			return strings.TrimSuffix(k, ":"), rest, true
		}
	}
	return "", "", false
}

// Log is a stored log line, published on its task's topic once it is
// stored.
type Log = store.LogEntry

// Progress is a task's progress as followers show it: the same fields as
// the API's TaskProgress, without depending on it.
type Progress struct {
	Current    int32  `json:"c,omitempty"`
	Total      int32  `json:"t,omitempty"`
	Percentage int32  `json:"p,omitempty"`
	Message    string `json:"m,omitempty"`
}

// TaskChanged says a task's status or progress changed; it is published,
// once the change is stored, on the task's topic and on its workspace's.
// A status of store.TaskQueued means the task was just created.
type TaskChanged struct {
	TaskID      string           `json:"id"`
	WorkspaceID string           `json:"ws"`
	Status      store.TaskStatus `json:"st"`
	Progress    Progress         `json:"p"`
	// Created is, on the instance that created the task, a copy of its
	// record as created, for the watchers that announce it whole; it is
	// nil for every other change, and across instances, where a watcher
	// reads the task from the store instead.
	Created *store.TaskRecord `json:"-"`
}

// WorkspaceChanged says a workspace's record changed (its status, mostly);
// it is published on the workspace's topic with the record as stored.
type WorkspaceChanged struct {
	// Workspace is the record as stored; it must not change once
	// published.
	Workspace *store.Workspace `json:"w"`
	Time      time.Time        `json:"at"`
}
