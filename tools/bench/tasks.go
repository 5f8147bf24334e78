package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// taskAnswer is the part of CreateTask's and GetTask's answers the
// harness reads.
type taskAnswer struct {
	Task struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"task"`
}

// createTask creates a claude_chat task in the harness's workspace whose
// prompt tells the agent (this program) what to do, and returns its id.
func (b *berthProcess) createTask(ctx context.Context, prompt string) (string, error) {
	body, err := json.Marshal(map[string]any{
		"workspace_id": b.workspace, "type": "TASK_TYPE_CLAUDE_CHAT", "prompt": prompt,
	})
	if err != nil {
		return "", err
	}
	var a taskAnswer
	if err := b.post(ctx, "TaskService/CreateTask", b.token, string(body), &a); err != nil {
		return "", err
	}
	return a.Task.ID, nil
}

// waitRunning polls the task until it is RUNNING; any other status but
// QUEUED, or a minute without it, is an error.
func (b *berthProcess) waitRunning(ctx context.Context, id string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var a taskAnswer
		if err := b.post(ctx, "TaskService/GetTask", b.token, `{"id":"`+id+`"}`, &a); err != nil {
			return err
		}
		switch a.Task.Status {
		case "TASK_STATUS_RUNNING":
			return nil
		case "TASK_STATUS_QUEUED", "":
		default:
			return fmt.Errorf("task %s is %s, not running:\n%s", id, a.Task.Status, b.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task %s not running after a minute", id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// idleTask starts a task whose agent prints its init line and then nothing
// while it runs: what idle streams follow.
func (b *berthProcess) idleTask(ctx context.Context) (string, error) {
	id, err := b.createTask(ctx, "idle")
	if err != nil {
		return "", err
	}
	return id, b.waitRunning(ctx, id)
}
