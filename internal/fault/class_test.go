package fault_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/berthhq/berth/internal/fault"
)

// TestClassify: every kind has its class, through wrapping too; anything
// else is internal and says nothing in public.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, c := range fault.Classes {
		for _, err := range []error{c.Kind, fault.New(c.Kind, "m"), fmt.Errorf("wrapped: %w", fault.New(c.Kind, "m"))} {
			got, ok := fault.Classify(err)
			if !ok || got.Code != c.Code || got.HTTP != c.HTTP || got.Reason != c.Reason {
				t.Errorf("Classify(%v) = %+v, %v; want %+v", err, got, ok, c)
			}
		}
	}
	want := map[error]int{fault.ErrConflict: http.StatusConflict, fault.ErrFailedPrecondition: http.StatusPreconditionFailed, fault.ErrResourceExhausted: http.StatusTooManyRequests}
	for kind, status := range want {
		if c, _ := fault.Classify(kind); c.HTTP != status {
			t.Errorf("%v: HTTP %d, want %d", kind, c.HTTP, status)
		}
	}
	if c, msg := fault.Public(errors.New("secret path /etc/x")); c != fault.Internal || msg != "internal error" {
		t.Errorf("Public(plain error) = %+v, %q", c, msg)
	}
	if c, msg := fault.Public(fmt.Errorf("ctx: %w", fault.NotFound("task"))); c.HTTP != http.StatusNotFound || msg != "task not found" {
		t.Errorf("Public(not found) = %+v, %q", c, msg)
	}
}
