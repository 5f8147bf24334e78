package server

import (
	"testing"

	"github.com/google/uuid"
)

// TestNewRequestID checks that a request id is what the README promises,
// a new UUID: canonical, random (version 4, RFC 4122 variant) and unique.
func TestNewRequestID(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 1000 {
		id := newRequestID()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if u.String() != id || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("%q: version %d, variant %s: want a canonical version 4 RFC 4122 UUID", id, u.Version(), u.Variant())
		}
		if seen[id] {
			t.Fatalf("%q made twice", id)
		}
		seen[id] = true
	}
}
