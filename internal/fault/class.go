package fault

import (
	"errors"
	"net/http"
)

// Class is how one kind of fault crosses an edge of the server: the
// Connect code of the RPCs, the HTTP status of the plain-HTTP edges (SSE,
// the WebSocket upgrade, the OIDC pages) and the seeds' error code that goes
// into google.rpc.ErrorInfo.reason.
type Class struct {
	// Kind is the sentinel (ErrNotFound, …).
	Kind error
	// Code is the Connect code as the Connect protocol spells it
	// ("already_exists"); connect.Code's UnmarshalText reads it.
	Code string
	// HTTP is the status of a plain-HTTP answer.
	HTTP int
	// Reason is the ErrorInfo reason.
	Reason string
}

// Classes is the one table through which faults cross to the wire, in
// the order Classify tries it. Every edge — the Connect error interceptor,
// SSE, the WebSocket upgrade and error frames, the OIDC pages — reads it,
// so a kind has the same code, status and reason everywhere.
var Classes = []Class{
	{ErrInvalid, "invalid_argument", http.StatusBadRequest, "VALIDATION_ERROR"},
	{ErrUnauthenticated, "unauthenticated", http.StatusUnauthorized, "UNAUTHORIZED"},
	{ErrPermissionDenied, "permission_denied", http.StatusForbidden, "FORBIDDEN"},
	{ErrNotFound, "not_found", http.StatusNotFound, "NOT_FOUND"},
	{ErrConflict, "already_exists", http.StatusConflict, "CONFLICT"},
	{ErrFailedPrecondition, "failed_precondition", http.StatusPreconditionFailed, "CONFLICT"},
	{ErrResourceExhausted, "resource_exhausted", http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED"},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE"},
	{ErrUnimplemented, "unimplemented", http.StatusNotImplemented, "SERVICE_UNAVAILABLE"},
}

// Internal is the class of an error that is not a fault: its text never
// leaves the server.
var Internal = Class{Code: "internal", HTTP: http.StatusInternalServerError, Reason: "INTERNAL_ERROR"}

// Classify returns the class of err's kind, and false (with Internal) when
// err is not one of the kinds.
func Classify(err error) (Class, bool) {
	if err == nil {
		return Internal, false
	}
	for _, c := range Classes {
		if errors.Is(err, c.Kind) {
			return c, true
		}
	}
	return Internal, false
}

// Public is what an edge may tell the caller about err: its class, and its
// public message (a fault's Message, or the error's text for a bare
// sentinel); for any other error, Internal and "internal error".
func Public(err error) (Class, string) {
	c, ok := Classify(err)
	if !ok {
		return Internal, "internal error"
	}
	if m, ok := Message(err); ok {
		return c, m
	}
	return c, err.Error()
}
