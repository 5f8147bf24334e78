package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestOpenWithinGivesUpOnAStreamThatNeverOpens(t *testing.T) {
	t.Parallel()
	hang := func(ctx context.Context) (func(), error) {
		<-ctx.Done() // a server that never answers: only the bound ends it
		return nil, ctx.Err()
	}
	if _, err := openWithin(t.Context(), hang, 10*time.Millisecond); err == nil {
		t.Fatal("a stream that never opened was taken")
	}
}

func TestOpenWithinKeepsAnOpenStreamUntilItsCloser(t *testing.T) {
	t.Parallel()
	var streamCtx context.Context
	closed := false
	open := func(ctx context.Context) (func(), error) {
		streamCtx = ctx
		return func() { closed = true }, nil
	}
	c, err := openWithin(t.Context(), open, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if streamCtx.Err() != nil {
		t.Fatal("the stream's context ended when it opened")
	}
	c()
	if !closed || !errors.Is(streamCtx.Err(), context.Canceled) {
		t.Errorf("after the closer: closed %v, context %v", closed, streamCtx.Err())
	}
	failing := func(context.Context) (func(), error) { return nil, errStatus }
	if _, err := openWithin(t.Context(), failing, time.Hour); !errors.Is(err, errStatus) {
		t.Errorf("a failed open: %v", err)
	}
}
