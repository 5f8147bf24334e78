// Package fault defines the errors that cross berth's layers as values.
//
// Domain code wraps one of the sentinel kinds (ErrNotFound, ErrConflict, …)
// with a message meant for the caller, usually through the constructors
// below. The transport edge (internal/server) maps each kind to a Connect
// code and a google.rpc.ErrorInfo reason in one table; anything that is not
// a fault is an internal error whose text never leaves the server.
package fault

import (
	"errors"
	"fmt"
	"time"
)

// The kinds of error. Each maps to one Connect code and one of the seeds'
// error reasons at the edge.
var (
	// ErrInvalid means the request is malformed or breaks a rule.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthenticated means the caller's credentials are missing or wrong.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied means the caller is known but not allowed.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotFound means the thing does not exist or the caller may not see it.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the thing already exists (a duplicate name, say).
	ErrConflict = errors.New("conflict")
	// ErrFailedPrecondition means the thing is in the wrong state for the call.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrResourceExhausted means a limit or budget was reached.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrUnavailable means a dependency is down; the call may be retried.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnimplemented means the server does not offer this capability yet.
	ErrUnimplemented = errors.New("unimplemented")
)

// Violation is one broken rule on one request field.
type Violation struct {
	// Field is the field's path in the request, such as "path" or "config.max_turns".
	Field string
	// Reason says what is wrong, in words a person can act on.
	Reason string
}

// Error is a fault with a message for the caller. Its Kind is one of the
// sentinels above; errors.Is(err, fault.ErrNotFound) sees through it.
type Error struct {
	// Kind is the sentinel this error is an instance of.
	Kind error
	// Message is safe to show the caller.
	Message string
	// Violations lists broken field rules, for ErrInvalid.
	Violations []Violation
	// Cause is the underlying error, kept for logs and never shown.
	Cause error
	// RetryAfter, when positive, is how long the caller should wait before
	// trying again (for ErrUnavailable and ErrResourceExhausted); the edge
	// sends it as Retry-After and a google.rpc.RetryInfo.
	RetryAfter time.Duration
}

// Error returns the public message.
func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// New returns an error of the given kind with a formatted public message.
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an ErrInvalid error for one field.
func Invalid(field, reason string) error {
	return &Error{
		Kind:       ErrInvalid,
		Message:    field + ": " + reason,
		Violations: []Violation{{Field: field, Reason: reason}},
	}
}

// NotFound returns an ErrNotFound error naming the kind of thing missing.
func NotFound(what string) error {
	return &Error{Kind: ErrNotFound, Message: what + " not found"}
}

// Message returns the public message of err if it is a fault, and false
// otherwise.
func Message(err error) (string, bool) {
	var f *Error
	if errors.As(err, &f) {
		return f.Message, true
	}
	return "", false
}

// RetryAfter returns the wait err suggests before a retry, if it is a fault
// that suggests one.
func RetryAfter(err error) (time.Duration, bool) {
	var f *Error
	if errors.As(err, &f) && f.RetryAfter > 0 {
		return f.RetryAfter, true
	}
	return 0, false
}
