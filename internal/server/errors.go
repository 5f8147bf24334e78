package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/ratelimit"
)

// errorDomain is the ErrorInfo domain of every berth error.
const errorDomain = "berth"

// Reason returns the seeds' error code that goes into ErrorInfo.reason for
// a Connect code: the reason of the fault class with that code (the one
// table, fault.Classes), and for the codes no fault has, the nearest one.
func Reason(code connect.Code) string {
	for _, c := range fault.Classes {
		if c.Code == code.String() {
			return c.Reason
		}
	}
	switch code {
	case connect.CodeOutOfRange:
		return "VALIDATION_ERROR"
	case connect.CodeAborted:
		return "CONFLICT"
	case connect.CodeDeadlineExceeded, connect.CodeCanceled:
		return "SERVICE_UNAVAILABLE"
	}
	return fault.Internal.Reason
}

// errorInterceptor turns every error a call returns into a *connect.Error
// that carries an ErrorInfo (and, for validation failures, a BadRequest with
// field violations). Faults keep their public message; anything else is
// logged with the request id and answered with a generic message. Panics are
// recovered the same way.
func errorInterceptor(logger *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
			// A server stream stays under this frame while it is open:
			// the deferred call takes little of it.
			defer translateError(ctx, logger, &spec, &err)
			return next(ctx, spec, stream)
		}
	}
}

// translateError is errorInterceptor's deferred call: it turns a panic
// into an error, and *err into the Connect error the client gets.
func translateError(ctx context.Context, logger *slog.Logger, spec *connect.Spec, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
	}
	if *err != nil {
		setRetryHeaders(ctx, *err)
		*err = toConnectError(ctx, logger, *spec, *err)
		if info := requestInfoFrom(ctx); info != nil {
			info.setCode(connect.CodeOf(*err))
		}
	}
}

func toConnectError(ctx context.Context, logger *slog.Logger, spec connect.Spec, err error) error {
	requestID := requestIDFrom(ctx)
	var (
		out        *connect.Error
		violations []*errdetails.BadRequest_FieldViolation
	)
	if le, ok := limitOf(err); ok {
		out = connect.NewError(connect.CodeResourceExhausted, "too many requests ("+limitNames[le.Class]+"); retry in "+
			retryIn(le.Decision.RetryAfter)).WithCause(err)
		out = withRetryInfo(out, le.Decision.RetryAfter)
	} else if f, ok := errors.AsType[*fault.Error](err); ok {
		out = connect.NewError(codeOfFault(f), f.Message).WithCause(err)
		if f.RetryAfter > 0 {
			out = withRetryInfo(out, f.RetryAfter)
		}
		for _, v := range f.Violations {
			violations = append(violations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Reason})
		}
	} else if ce, ok := errors.AsType[*connect.Error](err); ok && !ce.IsRemote() {
		out = ce
		if ve, ok := errors.AsType[*protovalidate.ValidationError](err); ok {
			for _, v := range ve.Violations {
				p := v.Proto
				violations = append(violations, &errdetails.BadRequest_FieldViolation{
					Field:       protovalidate.FieldPathString(p.GetField()),
					Description: p.GetMessage(),
					Reason:      p.GetRuleId(),
				})
			}
		}
	} else if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		out = connect.NewError(connect.CodeCanceled, "the request was canceled").WithCause(err)
	} else if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		out = connect.NewError(connect.CodeDeadlineExceeded, "the request ran past its deadline").WithCause(err)
	} else {
		logger.ErrorContext(ctx, "internal error", "procedure", spec.Procedure, "error", err.Error())
		out = connect.NewError(connect.CodeInternal, "internal error; quote request id "+requestID+" when reporting it").WithCause(err)
	}
	if hasErrorInfo(out) {
		return out
	}
	info := &errdetails.ErrorInfo{Reason: Reason(out.Code()), Domain: errorDomain}
	if requestID != "" {
		info.Metadata = map[string]string{"request_id": requestID}
	}
	if d, err := connectproto.NewErrorDetail(info); err == nil {
		out = out.WithDetail(d)
	}
	if len(violations) > 0 {
		if d, err := connectproto.NewErrorDetail(&errdetails.BadRequest{FieldViolations: violations}); err == nil {
			out = out.WithDetail(d)
		}
	}
	return out
}

// withRetryInfo adds a google.rpc.RetryInfo with the delay to e, which
// gRPC clients and Connect's retry helpers read.
func withRetryInfo(e *connect.Error, delay time.Duration) *connect.Error {
	if d, err := connectproto.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
		return e.WithDetail(d)
	}
	return e
}

// setRetryHeaders writes, on the response of a call that failed with err,
// the headers of the limit that refused it (RateLimit-* of that class and
// Retry-After, replacing those of any class that allowed the call before)
// or, for another fault with a retry hint, Retry-After.
func setRetryHeaders(ctx context.Context, err error) {
	call, ok := connect.CallInfoForServerContext(ctx)
	if !ok {
		return
	}
	h := http.Header{}
	if le, ok := limitOf(err); ok {
		ratelimit.SetHeaders(h, le.Decision)
	} else if f, ok := errors.AsType[*fault.Error](err); ok && f.RetryAfter > 0 {
		h.Set("Retry-After", retrySeconds(f.RetryAfter))
	}
	for k, v := range h {
		call.ResponseHeader().SetValues(k, v)
	}
}

// codeOfFault is f's Connect code, from the one table (fault.Classes).
func codeOfFault(f *fault.Error) connect.Code {
	c, _ := fault.Classify(f.Kind)
	var code connect.Code
	if code.UnmarshalText([]byte(c.Code)) != nil {
		return connect.CodeInternal
	}
	return code
}

func hasErrorInfo(e *connect.Error) bool {
	for _, d := range e.Details() {
		if d.Type == "google.rpc.ErrorInfo" {
			return true
		}
	}
	return false
}
