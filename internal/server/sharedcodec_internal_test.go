package server

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect/v2/connectproto"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/stream"
	"github.com/berthhq/berth/internal/task"
)

// codec is what both Connect codecs do.
type codec interface {
	MarshalWrite(ctx context.Context, dst io.Writer, msg any) error
}

// TestSharedLineEncodedOnce: a log line's shared stream message is written
// by each codec exactly as the plain codec writes it, from one encoding
// kept in the line — later subscribers write those bytes and encode
// nothing — while any other message is encoded as usual.
// Not parallel: it counts allocations.
func TestSharedLineEncodedOnce(t *testing.T) {
	plainJSON := connectproto.NewJSONCodec()
	plainJSON.MarshalOptions.UseProtoNames = true
	plainJSON.MarshalOptions.EmitDefaultValues = true
	plainBinary := connectproto.NewBinaryCodec()
	for _, c := range []struct {
		name          string
		plain, shared codec
		format        event.Format
	}{
		{"json", plainJSON, newMemoJSON(plainJSON), event.FormatConnectJSON},
		{"proto", plainBinary, sharedBinary{plainBinary}, event.FormatConnectProto},
	} {
		t.Run(c.name, func(t *testing.T) {
			line := event.NewLine(store.LogEntry{TaskID: "t", Seq: 3, Time: time.Unix(1700000000, 0).UTC(), Level: "info", Source: "stdout", Message: "hello"})
			msg := line.Shared(func(e store.LogEntry) any {
				return task.StreamResponse(stream.TaskEvent{Kind: stream.KindLog, Log: e})
			}).(*berthv1.StreamTaskLogsResponse)
			var want, got bytes.Buffer
			if err := c.plain.MarshalWrite(t.Context(), &want, msg); err != nil {
				t.Fatal(err)
			}
			if err := c.shared.MarshalWrite(t.Context(), &got, msg); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) || got.Len() == 0 {
				t.Fatalf("wrote %q, the plain codec %q", got.Bytes(), want.Bytes())
			}
			// The encoding is kept in the line: asking for it again makes
			// none.
			kept, err := line.Encoded(c.format, func(store.LogEntry) ([]byte, error) {
				t.Fatal("the codec did not keep its encoding in the line")
				return nil, nil
			})
			if err != nil || !bytes.Equal(kept, want.Bytes()) {
				t.Fatalf("kept %q, %v", kept, err)
			}
			// A later subscriber copies bytes: it allocates nothing.
			if n := testing.AllocsPerRun(100, func() {
				if err := c.shared.MarshalWrite(context.Background(), io.Discard, msg); err != nil {
					t.Fatal(err)
				}
			}); n > 0 {
				t.Errorf("a later subscriber's write allocates %.0f times: it encodes again", n)
			}
			// An equal message of no line is encoded as usual.
			other := task.StreamResponse(stream.TaskEvent{Kind: stream.KindLog, Log: line.LogEntry})
			got.Reset()
			if err := c.shared.MarshalWrite(t.Context(), &got, other); err != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("another message: wrote %q, %v", got.Bytes(), err)
			}
			if _, ok := event.SharedLine(other); ok {
				t.Fatal("a message of no line was taken for a shared one")
			}
		})
	}
}
