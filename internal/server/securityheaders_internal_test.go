package server

import (
	"net/http"
	"testing"
)

// TestSecurityValuesCanonical checks that the security headers' keys are
// canonical: admit stores them into the header map as they are, where a
// key of another form would be a second header that Get never finds.
func TestSecurityValuesCanonical(t *testing.T) {
	t.Parallel()
	for _, h := range securityValues {
		if c := http.CanonicalHeaderKey(h.key); c != h.key {
			t.Errorf("%q is not canonical: %q", h.key, c)
		}
		if len(h.value) != 1 || cap(h.value) != 1 {
			t.Errorf("%s: a value must be one string with no room to append in place", h.key)
		}
	}
}
