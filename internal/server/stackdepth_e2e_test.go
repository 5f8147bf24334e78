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

// TestStreamStackDepth: an idle StreamTaskLogs over HTTP/2 parks its
// handler's goroutine a few frames under net/http's, not under a chain of
// middleware and interceptors. It is what memory an idle stream holds:
// the runtime halves a parked goroutine's stack only while it uses less
// than a quarter of it, and at 36 frames (6.7 KB) deep the stream kept a
// 16 KiB stack, at 16 frames (3.7 KB) 8 KiB. Frames are counted rather than
// bytes, which the runtime does not report per goroutine; the bound leaves
// room for a frame or two, not for a chain.
func TestStreamStackDepth(t *testing.T) {
	e := newStreamEnv(t)
	task := e.task(t, "idle [hang]")
	tasks := berthv1connect.NewTaskServiceClient(connect.NewClient(connecthttp.NewTransport(httpClient(true), e.srv.URL, connecthttp.WithGRPC())))
	ctx, cancel := context.WithCancel(as(t.Context(), e.token))
	defer cancel()
	st, err := tasks.StreamTaskLogs(ctx, &berthv1.StreamTaskLogsRequest{TaskId: task})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Receive(); err != nil { // the task's status: the stream is open
		t.Fatal(err)
	}
	const most = 20
	var frames []string
	for {
		if frames = parkedStream(); frames != nil {
			break
		}
		if d, ok := t.Deadline(); ok && time.Until(d) < 5*time.Second {
			t.Fatal("no StreamTaskLogs handler parked in TaskFollower.Run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the idle stream's goroutine, %d frames:\n%s", len(frames), strings.Join(frames, "\n"))
	if len(frames) > most {
		t.Errorf("an idle StreamTaskLogs parks %d frames deep, want at most %d", len(frames), most)
	}
}

// parkedStream is the functions on the stack of the goroutine that serves
// a StreamTaskLogs and waits in TaskFollower.Run, innermost first and
// without the runtime's, or nil when there is none.
func parkedStream() []string {
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
		if !strings.Contains(s, "task.(*Handler).StreamTaskLogs(") || !strings.Contains(s, "stream.(*TaskFollower).Run(") && !strings.Contains(s, "stream.Loop.wait(") {
			continue
		}
		var frames []string
		for line := range strings.SplitSeq(s, "\n") {
			if line == "" || strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "goroutine ") || strings.HasPrefix(line, "created by ") || strings.HasPrefix(line, "runtime.") {
				continue
			}
			frames = append(frames, line[:strings.LastIndexByte(line, '(')])
		}
		return frames
	}
	return nil
}
