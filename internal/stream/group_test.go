package stream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/stream"
)

// TestGroup: Wait returns at once on an empty group, holds while a stream
// is counted (also one that joined while it waited), returns when the
// last one is done, and gives up with its context.
func TestGroup(t *testing.T) {
	t.Parallel()
	var g stream.Group
	if err := g.Wait(t.Context()); err != nil {
		t.Fatalf("empty: %v", err)
	}
	g.Add()
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := g.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("one counted: %v, want the deadline", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- g.Wait(t.Context()) }()
	g.Add() // joins while Wait waits
	g.Done()
	g.Done()
	if err := <-waited; err != nil {
		t.Fatalf("after the last Done: %v", err)
	}
	g.Add() // the group is used again
	go g.Done()
	if err := g.Wait(t.Context()); err != nil {
		t.Fatalf("used again: %v", err)
	}
}
