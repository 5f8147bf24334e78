package server

import (
	"bytes"
	"context"
	"io"

	"connectrpc.com/connect/v2/connectproto"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/store"
)

// writeShared writes msg, when it is a log line's shared stream message
// (event.Line.Shared, which every Connect subscriber of the task sends),
// in format f from the encoding kept in its Line: encode makes it for the
// first subscriber, and every later one writes the same bytes. ok is
// false for any other message, which the caller encodes itself.
func writeShared(ctx context.Context, dst io.Writer, msg any, f event.Format, encode func(context.Context, io.Writer, any) error) (ok bool, err error) {
	if _, ok := msg.(*berthv1.StreamTaskLogsResponse); !ok {
		return false, nil
	}
	line, ok := event.SharedLine(msg)
	if !ok {
		return false, nil
	}
	b, err := line.Encoded(f, func(store.LogEntry) ([]byte, error) {
		var buf bytes.Buffer
		err := encode(ctx, &buf, msg)
		return buf.Bytes(), err
	})
	if err != nil {
		return true, err
	}
	_, err = dst.Write(b)
	return true, err
}

// sharedBinary is the Connect binary protobuf codec, writing a log line's
// shared stream message from its Line's kept encoding (see writeShared).
type sharedBinary struct {
	*connectproto.BinaryCodec
}

// MarshalWrite writes msg as binary protobuf.
func (c sharedBinary) MarshalWrite(ctx context.Context, dst io.Writer, msg any) error {
	if ok, err := writeShared(ctx, dst, msg, event.FormatConnectProto, c.BinaryCodec.MarshalWrite); ok {
		return err
	}
	return c.BinaryCodec.MarshalWrite(ctx, dst, msg)
}
