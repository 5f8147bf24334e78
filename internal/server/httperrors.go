package server

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

// jsonErrorWriter holds back an error answer's body until the handler is
// done, then writes the Connect-style body (finish): every error answer
// the server writes outside an RPC's own error path carries one body,
// Connect's JSON error (code, message and an ErrorInfo with the reason and
// the request id), as an RPC error does. The front (front.ServeHTTP) puts
// it under every request.
//   - An error written without JSON — the mux's 404 and 405, the Connect
//     handlers' 415, the body limit's 413, a CSRF refusal written with
//     http.Error — is replaced: the status and headers (Allow,
//     Retry-After, …) stay, the text's first line becomes the message.
//   - A JSON error of berth's edges (SSE, WebSocket upgrade, rate limits:
//     {"code", "message"}) gets the ErrorInfo it lacks.
//
// Answers that succeed, and gRPC, Connect-streaming and event-stream
// answers, pass untouched.
type jsonErrorWriter struct {
	http.ResponseWriter
	r        *http.Request
	status   int
	mode     errorMode
	held     []byte // the handler's body, at most maxHeldError bytes
	wroteAny bool
}

type errorMode int

const (
	passThrough  errorMode = iota
	replaceText            // not JSON: replace it
	completeJSON           // JSON: add what it lacks
)

// maxHeldError bounds the body held back; a larger one passes as written.
const maxHeldError = 4096

func (w *jsonErrorWriter) WriteHeader(code int) {
	if w.wroteAny {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteAny = true
	w.status = code
	ctype := w.Header().Get("Content-Type")
	switch {
	case code < 400:
	case strings.HasPrefix(ctype, "application/json"):
		w.mode = completeJSON
		return
	case !strings.HasPrefix(ctype, "application/grpc") && !strings.HasPrefix(ctype, "application/connect") &&
		!strings.HasPrefix(ctype, "text/event-stream"):
		w.mode = replaceText
		return // the status is written with the body in finish
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if !w.wroteAny {
		w.WriteHeader(http.StatusOK)
	}
	switch w.mode {
	case replaceText:
		if room := maxHeldError - len(w.held); room > 0 {
			w.held = append(w.held, b[:min(len(b), room)]...)
		}
		return len(b), nil
	case completeJSON:
		if len(w.held)+len(b) <= maxHeldError {
			w.held = append(w.held, b...)
			return len(b), nil
		}
		// Too large to be one of berth's small errors: send it as it is.
		w.mode = passThrough
		w.ResponseWriter.WriteHeader(w.status)
		if _, err := w.ResponseWriter.Write(w.held); err != nil {
			return 0, err
		}
		w.held = nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *jsonErrorWriter) Flush() {
	if w.mode != passThrough {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer (flushing
// streams, hijacking for WebSockets).
func (w *jsonErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wireError is the Connect protocol's JSON error body.
type wireError struct {
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Details []wireDetail `json:"details"`
}

type wireDetail struct {
	Type  string `json:"type"`
	Value string `json:"value"`
	Debug any    `json:"debug,omitempty"`
}

func (w *jsonErrorWriter) finish() {
	var body []byte
	switch w.mode {
	case passThrough:
		return
	case completeJSON:
		body = w.completed()
	case replaceText:
		msg := strings.TrimSpace(strings.SplitN(string(w.held), "\n", 2)[0])
		if msg == "" || msg == http.StatusText(w.status) || strings.HasSuffix(msg, "page not found") {
			msg = defaultErrorMessage(w.status, w.r)
		}
		code := httpToCode(w.status)
		body, _ = json.Marshal(wireError{Code: code.String(), Message: msg, Details: []wireDetail{w.errorInfo(code)}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(body)
}

// completed is a held JSON error body with an ErrorInfo added when it has
// a code and a message but no details; any other body is kept as it is.
func (w *jsonErrorWriter) completed() []byte {
	var e map[string]json.RawMessage
	if json.Unmarshal(w.held, &e) != nil || e["code"] == nil || e["message"] == nil || e["details"] != nil {
		return w.held
	}
	var name string
	if json.Unmarshal(e["code"], &name) != nil {
		return w.held
	}
	var code connect.Code
	if code.UnmarshalText([]byte(name)) != nil {
		code = httpToCode(w.status)
	}
	detail, _ := json.Marshal([]wireDetail{w.errorInfo(code)})
	e["details"] = detail
	out, err := json.Marshal(e)
	if err != nil {
		return w.held
	}
	return out
}

// errorInfo is the ErrorInfo detail every error body carries.
func (w *jsonErrorWriter) errorInfo(code connect.Code) wireDetail {
	info := &errdetails.ErrorInfo{Reason: Reason(code), Domain: "berth", Metadata: map[string]string{"request_id": requestIDFrom(w.r.Context())}}
	raw, _ := proto.Marshal(info) // an ErrorInfo always marshals
	return wireDetail{
		Type:  "google.rpc.ErrorInfo",
		Value: base64.RawStdEncoding.EncodeToString(raw),
		Debug: map[string]any{"reason": info.GetReason(), "domain": info.GetDomain(), "metadata": info.GetMetadata()},
	}
}

// httpToCode is the Connect code of an HTTP error status, as the Connect
// protocol maps them.
func httpToCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return connect.CodeInvalidArgument
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeNotFound
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return connect.CodeUnimplemented
	case http.StatusConflict:
		return connect.CodeAlreadyExists
	case http.StatusPreconditionFailed:
		return connect.CodeFailedPrecondition
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return connect.CodeResourceExhausted
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return connect.CodeDeadlineExceeded
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

// defaultErrorMessage says what went wrong when the handler said nothing
// a person can act on.
func defaultErrorMessage(status int, r *http.Request) string {
	switch status {
	case http.StatusNotFound:
		return "no such route: " + r.Method + " " + r.URL.Path + "; the API is listed at GET /"
	case http.StatusMethodNotAllowed:
		return r.Method + " is not allowed on " + r.URL.Path + "; the Allow header lists the methods that are (RPCs are POST, or GET when side-effect-free)"
	case http.StatusUnsupportedMediaType:
		return "unsupported Content-Type " + quoteOrNone(r.Header.Get("Content-Type")) +
			"; send application/json or application/proto (Connect), application/grpc or application/grpc-web"
	case http.StatusRequestEntityTooLarge:
		return "the request body is larger than this server accepts (--max-body-bytes)"
	}
	return strings.ToLower(http.StatusText(status))
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return `"` + s + `"`
}
