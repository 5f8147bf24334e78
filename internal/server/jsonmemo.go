package server

import (
	"context"
	"fmt"
	"io"
	"sync"

	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/berthhq/berth/internal/event"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// memoJSON is the Connect JSON codec with a memo of the encodings of the
// responses of the reads that clients repeat (polling a workspace or a
// task): protojson was 44% of a cached GetWorkspace's CPU and a third of
// its allocations, while the same workspace read twice is the same
// message. The memo is keyed by the message's type and deterministic
// binary encoding, which costs a small fraction of the JSON encoding: equal
// binary encodings of one type are equal messages, so the JSON kept for
// one is the JSON protojson makes of the other (in this process: protojson
// varies its whitespace per build). Only the types in memoJSONTypes are
// memoised — responses that never carry a credential — so no token or key
// outlives its response in this memo.
type memoJSON struct {
	*connectproto.JSONCodec
	types map[protoreflect.FullName]bool

	mu      sync.RWMutex
	entries map[string][]byte // type name, 0, deterministic binary → JSON
	bytes   int               // held by entries, keys and values
	maxSize int               // bound of bytes
}

// memoJSONTypes are the responses whose encodings are memoised.
var memoJSONTypes = []proto.Message{
	(*berthv1.GetWorkspaceResponse)(nil),
	(*berthv1.GetTaskResponse)(nil),
	(*berthv1.ListWorkspacesResponse)(nil),
}

// Bounds of the memo: a message larger than memoMaxMessage is encoded
// every time, and the memo holds at most memoMaxBytes of keys and JSON.
const (
	memoMaxMessage = 16 << 10
	memoMaxBytes   = 8 << 20
)

// newMemoJSON wraps codec (configured, not changed afterwards) with the
// memo.
func newMemoJSON(codec *connectproto.JSONCodec) *memoJSON {
	types := make(map[protoreflect.FullName]bool, len(memoJSONTypes))
	for _, m := range memoJSONTypes {
		types[m.ProtoReflect().Descriptor().FullName()] = true
	}
	return &memoJSON{JSONCodec: codec, types: types, entries: make(map[string][]byte), maxSize: memoMaxBytes}
}

// keyBuffers recycle the memo keys' buffers: a hit allocates nothing.
var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// MarshalWrite writes msg as protobuf JSON, from the memo when msg is of a
// memoised type and an equal message was encoded before.
//
// A log line's shared stream message is written from its Line's kept
// encoding instead (see writeShared).
func (c *memoJSON) MarshalWrite(ctx context.Context, dst io.Writer, msg any) error {
	if ok, err := writeShared(ctx, dst, msg, event.FormatConnectJSON, c.JSONCodec.MarshalWrite); ok {
		return err
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return c.JSONCodec.MarshalWrite(ctx, dst, msg)
	}
	name := m.ProtoReflect().Descriptor().FullName()
	if !c.types[name] {
		return c.JSONCodec.MarshalWrite(ctx, dst, msg)
	}
	buf := keyBuffers.Get().(*[]byte)
	defer keyBuffers.Put(buf)
	key := append(append((*buf)[:0], name...), 0)
	key, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(key, m)
	if cap(key) <= 4*memoMaxMessage {
		*buf = key[:0] // a larger one is left to the collector
	}
	if err != nil {
		return fmt.Errorf("memo key: %w", err)
	}
	if len(key) > memoMaxMessage {
		return c.JSONCodec.MarshalWrite(ctx, dst, msg)
	}
	c.mu.RLock()
	out, hit := c.entries[string(key)]
	c.mu.RUnlock()
	if !hit {
		if out, err = c.MarshalOptions.Marshal(m); err != nil {
			return err
		}
		c.remember(string(key), out)
	}
	_, err = dst.Write(out)
	return err
}

// remember keeps out as key's encoding, forgetting arbitrary others while
// the memo would exceed its bound.
func (c *memoJSON) remember(key string, out []byte) {
	size := len(key) + len(out)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	for k, v := range c.entries {
		if c.bytes+size <= c.maxSize {
			break
		}
		delete(c.entries, k)
		c.bytes -= len(k) + len(v)
	}
	c.entries[key] = out
	c.bytes += size
}
