package server_test

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
)

// TestStreamStackDepth: an idle Connect server stream over HTTP/2
// (StreamTaskLogs, WatchWorkspace) parks its handler's goroutine a few
// frames under net/http's, not under a chain of middleware and
// interceptors. It is what memory an idle stream holds: the runtime halves
// a parked goroutine's stack only while it uses less than a quarter of
// it, and at 36 frames (6.7 KB) deep a stream kept a 16 KiB stack, at 16
// frames (about 2.6 KB) 8 KiB. Frames are counted rather than bytes, which the
// runtime does not report per goroutine; the bound leaves room for a
// frame or two, not for a chain.
func TestStreamStackDepth(t *testing.T) {
	e := newStreamEnv(t)
	task := e.task(t, "idle [hang]")
	c := connect.NewClient(connecthttp.NewTransport(httpClient(true), e.srv.URL, connecthttp.WithGRPC()))
	ctx, cancel := context.WithCancel(as(t.Context(), e.token))
	defer cancel()
	logs, err := berthv1connect.NewTaskServiceClient(c).StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: task})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	if _, err := logs.Receive(); err != nil { // the task's status: the stream is open
		t.Fatal(err)
	}
	watch, err := berthv1connect.NewWorkspaceServiceClient(c).WatchWorkspace(ctx, &berthv1.WatchWorkspaceRequest{WorkspaceId: e.ws})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if _, err := watch.Receive(); err != nil { // the workspace's state
		t.Fatal(err)
	}
	const most = 20
	for _, handler := range []string{"task.(*Handler).StreamTaskLogs(", "workspace.(*Handler).WatchWorkspace("} {
		var frames []string
		for {
			if frames = parkedStream(handler); frames != nil {
				break
			}
			if d, ok := t.Deadline(); ok && time.Until(d) < 5*time.Second {
				t.Fatalf("no %s parked on the bus", strings.TrimSuffix(handler, "("))
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("the goroutine of an idle %s, %d frames:\n%s", strings.TrimSuffix(handler, "("), len(frames), strings.Join(frames, "\n"))
		if len(frames) > most {
			t.Errorf("an idle %s parks %d frames deep, want at most %d", strings.TrimSuffix(handler, "("), len(frames), most)
		}
	}
}

// parkedStream is the functions on the stack of the goroutine that serves
// a stream in handler (a function's name and its opening parenthesis) and
// waits on the bus, innermost first and without the runtime's, or nil
// when there is none. A goroutine that is not parked on its select, but
// caught sending, flushing or stepping (deeper, and only for a moment),
// is not one: the caller asks again.
func parkedStream(handler string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		s := string(g)
		if !strings.Contains(s, handler) || !strings.Contains(s, ").Run(") && !strings.Contains(s, "stream.Loop.wait(") {
			continue
		}
		if header, _, _ := strings.Cut(s, "\n"); !strings.Contains(header, " [select") {
			return nil
		}
		var frames []string
		for line := range strings.SplitSeq(s, "\n") {
			if line == "" || strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "goroutine ") || strings.HasPrefix(line, "created by ") || strings.HasPrefix(line, "runtime.") {
				continue
			}
			frames = append(frames, line[:strings.LastIndexByte(line, '(')])
		}
		// Parked on the bus: in the follower's select, not in one of
		// net/http's further down (a flush waiting for the connection).
		if len(frames) == 0 || !strings.HasSuffix(frames[0], "internal/stream.run") && !strings.HasSuffix(frames[0], "internal/stream.Loop.wait") {
			return nil
		}
		return frames
	}
	return nil
}
