package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// fuzzProcedure is one RPC of the API as the fuzzer calls it.
type fuzzProcedure struct {
	path   string // /berth.v1.TaskService/CreateTask
	method protoreflect.MethodDescriptor
}

// fuzzProcedures lists every RPC of every service berth's proto files
// declare, in a fixed order so that a corpus entry always means the same
// call.
func fuzzProcedures() []fuzzProcedure {
	var procs []fuzzProcedure
	for _, file := range []protoreflect.FileDescriptor{
		berthv1.File_berth_v1_auth_proto, berthv1.File_berth_v1_workspace_proto,
		berthv1.File_berth_v1_task_proto, berthv1.File_berth_v1_stats_proto,
		berthv1.File_berth_v1_admin_proto,
	} {
		services := file.Services()
		for i := range services.Len() {
			methods := services.Get(i).Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				procs = append(procs, fuzzProcedure{path: "/" + string(services.Get(i).FullName()) + "/" + string(m.Name()), method: m})
			}
		}
	}
	slices.SortFunc(procs, func(a, b fuzzProcedure) int { return strings.Compare(a.path, b.path) })
	return procs
}

// sideEffectFree reports whether a method may be called with GET.
func sideEffectFree(m protoreflect.MethodDescriptor) bool {
	opts, ok := m.Options().(*descriptorpb.MethodOptions)
	return ok && opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// The ways the fuzzer sends a body.
const (
	sendJSON  = iota // POST application/json (server streams: application/connect+json, enveloped)
	sendProto        // POST application/proto (server streams: application/connect+proto)
	sendGET          // GET ?encoding=json&message=…, for side-effect-free unary methods; else as sendJSON
	sendGzip         // POST application/json with Content-Encoding: gzip, the bytes as they are; server streams as sendJSON
	sendKinds
)

// The credentials the fuzzer sends. API keys outlive a Logout the fuzzer
// sends with a session's token, so most inputs keep their credentials.
const (
	asNobody       = iota
	asAdmin        // an admin's API key
	asMember       // a member's API key
	asAdminSession // the admin's session, until an input logs it out
	asMemberSession
	asKinds
)

// connectCodes are the error codes of the Connect protocol.
var connectCodes = map[string]bool{
	"canceled": true, "unknown": true, "invalid_argument": true, "deadline_exceeded": true,
	"not_found": true, "already_exists": true, "permission_denied": true, "resource_exhausted": true,
	"failed_precondition": true, "aborted": true, "out_of_range": true, "unimplemented": true,
	"internal": true, "unavailable": true, "data_loss": true, "unauthenticated": true,
}

// unsafeToSend reports whether the request would make berth start
// something long or reach past loopback: an agent run or an image build,
// a git operation with a URL (a clone, a fetch), a workspace cloned from a
// URL. The check decodes leniently: a body it cannot read, berth (which is
// stricter) refuses too.
func unsafeToSend(m protoreflect.MethodDescriptor, kind int, body []byte) bool {
	switch m.Name() {
	case "CreateTask", "CreateWorkspace", "UpdateWorkspace":
	default:
		return false
	}
	if kind == sendGzip {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return false
		}
		// berth reads at most --max-body-bytes (4 MiB) of it.
		if body, err = io.ReadAll(io.LimitReader(zr, 4<<20+1)); err != nil || len(body) > 4<<20 {
			return false
		}
	}
	msg := dynamicpb.NewMessage(m.Input())
	var err error
	if kind == sendProto {
		err = proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, msg)
	} else {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, msg)
	}
	if err != nil {
		return false
	}
	// Back to the generated types, whose getters read better.
	b, err := proto.Marshal(msg)
	if err != nil {
		return true
	}
	switch m.Name() {
	case "CreateTask":
		var req berthv1.CreateTaskRequest
		if proto.Unmarshal(b, &req) != nil {
			return true
		}
		switch {
		case req.GetType() == berthv1.TaskType_TASK_TYPE_CLAUDE_CHAT, req.GetType() == berthv1.TaskType_TASK_TYPE_DOCKER_BUILD:
			return true
		case req.GetContinueTaskId() != "", req.GetGit().GetUrl() != "":
			return true
		}
		return false // a git operation without a URL, or a type berth refuses
	case "CreateWorkspace":
		var req berthv1.CreateWorkspaceRequest
		return proto.Unmarshal(b, &req) != nil || req.GetGitUrl() != ""
	default:
		var req berthv1.UpdateWorkspaceRequest
		return proto.Unmarshal(b, &req) != nil || req.GitUrl != nil
	}
}

// FuzzAPI sends the fuzzer's bytes as the request body of any RPC, over
// Connect JSON, Connect binary or Connect GET, with no credentials or an
// admin's or a member's, to one real server (SQLite, process runtime),
// and checks that berth answers every one as the Connect protocol says:
// 200 with the response message, or an error status with a JSON body
// {code, message} whose code is a Connect code — never 500 or a 5xx other
// than 503 unavailable, which would mean a panic or an unmapped error —
// and that /health still answers 200 afterwards.
func FuzzAPI(f *testing.F) {
	srv := startServer(f, "--claude-path", "/bin/false", "--max-workspaces-per-user", "20")
	c := srv.clients(protocols[0])
	admin := register(f, c, "fuzz-admin@example.com")
	member := register(f, c, "fuzz-member@example.com")
	ws, err := c.Workspace.CreateWorkspace(as(f.Context(), member.GetTokens().GetAccessToken()), &berthv1.CreateWorkspaceRequest{Name: "fuzz"})
	if err != nil {
		f.Fatalf("CreateWorkspace: %v", err)
	}
	wsID := ws.GetWorkspace().GetId()
	key := func(reg *berthv1.RegisterResponse) string {
		res, err := c.Auth.CreateApiKey(as(f.Context(), reg.GetTokens().GetAccessToken()), &berthv1.CreateApiKeyRequest{Name: "fuzz", ManageKeys: true})
		if err != nil {
			f.Fatalf("CreateApiKey: %v", err)
		}
		return res.GetKey()
	}
	tokens := [asKinds]string{"", key(admin), key(member), admin.GetTokens().GetAccessToken(), member.GetTokens().GetAccessToken()}
	// An input that disables or demotes the fuzzer's own accounts would
	// leave the rest of the run unauthenticated.
	ownIDs := [][]byte{[]byte(admin.GetUser().GetId()), []byte(member.GetUser().GetId())}
	procs := fuzzProcedures()
	index := func(name string) uint8 {
		for i, p := range procs {
			if strings.HasSuffix(p.path, "/"+name) {
				return uint8(i)
			}
		}
		f.Fatalf("no RPC %s", name)
		return 0
	}

	// Every RPC with its empty request, each way, each credential.
	for i, p := range procs {
		for tok := range uint8(asKinds) {
			f.Add(uint8(i), uint8(sendJSON), tok, []byte("{}"))
			f.Add(uint8(i), uint8(sendProto), tok, []byte{})
			if sideEffectFree(p.method) {
				f.Add(uint8(i), uint8(sendGET), tok, []byte("{}"))
			}
		}
	}
	// Real requests.
	real := map[string][]string{
		"Register":        {`{"email":"fuzz-new@example.com","password":"correct horse battery"}`},
		"Login":           {`{"email":"fuzz-member@example.com","password":"correct horse battery"}`, `{"email":"fuzz-member@example.com","password":"wrong"}`},
		"CreateWorkspace": {`{"name":"fuzz-2","description":"d","tags":["a","b"]}`},
		"GetWorkspace":    {`{"id":"` + wsID + `"}`},
		"CreateTask": {`{"workspace_id":"` + wsID + `","type":"TASK_TYPE_GIT_OPERATION","git":{"operation":"GIT_OPERATION_TYPE_STATUS"}}`,
			`{"workspaceId":"` + wsID + `","type":2,"git":{"operation":"GIT_OPERATION_TYPE_INIT","ref":"trunk"}}`,
			`{"workspace_id":"` + wsID + `","type":2,"git":{"operation":"GIT_OPERATION_TYPE_CHECKOUT","ref":"--upload-pack=touch /tmp/x"}}`},
		"ListTasks":      {`{"workspace_id":"` + wsID + `","page_size":1000}`},
		"WatchWorkspace": {`{"workspace_id":"` + wsID + `"}`},
		"SetUserRole":    {`{"user_id":"0190f2a4-7d1e-7c3a-9b2e-3f4a5b6c7d8e","role":"ROLE_ADMIN"}`},
		"CreateApiKey":   {`{"name":"k","scopes":["task.read"]}`},
	}
	for name, bodies := range real {
		for _, b := range bodies {
			f.Add(index(name), uint8(sendJSON), uint8(asMember), []byte(b))
			f.Add(index(name), uint8(sendJSON), uint8(asAdmin), []byte(b))
		}
	}
	if b, err := proto.Marshal(&berthv1.GetWorkspaceRequest{Id: wsID}); err == nil {
		f.Add(index("GetWorkspace"), uint8(sendProto), uint8(asMember), b)
	}
	// Hostile bodies, sent to a few RPCs.
	hostile := []string{
		strings.Repeat(`{"config":`, 10000) + `{}` + strings.Repeat(`}`, 10000),
		strings.Repeat(`[`, 100000),
		`{"page_size":99999999999999999999999999999999}`, `{"page_size":-1}`, `{"page_size":1e308}`, `{"page_size":"NaN"}`,
		`{"name":123,"tags":"x","type":{"a":1}}`, `{"email":["a"]}`, `{"id":null}`,
		"{\"name\":\"\xff\xfe\"}", `{"name":"\ud800"}`, "{\"name\":\"a\\u0000b\"}", "{\"name\":\"a\x00b\"}",
		`{"tags":[` + strings.TrimSuffix(strings.Repeat(`"t",`, 200000), ",") + `]}`,
		`{"metadata":{` + strings.TrimSuffix(strings.Repeat(`"k":"v",`, 10000), ",") + `}}`,
		`{"name":"x","name":"y"}`, `{"unknown_field":1}`, `{"@type":"type.googleapis.com/x"}`,
		`null`, `[]`, `"x"`, ``, `{`, "\x00\x00\x00\x00\x05",
	}
	for _, b := range hostile {
		for _, name := range []string{"CreateTask", "CreateWorkspace", "ListTasks", "Register", "GetStats"} {
			f.Add(index(name), uint8(sendJSON), uint8(asMember), []byte(b))
		}
		f.Add(index("ListWorkspaces"), uint8(sendGET), uint8(asMember), []byte(b))
	}
	for _, b := range [][]byte{
		{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},                                     // a length past the end
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // an 11-byte varint
		{0x0b, 0x0b, 0x0b, 0x0b},                                                 // groups that never end
		bytes.Repeat([]byte{0x32, 0x01, 'a'}, 100000),                            // 100000 repeated tags
		{0xff},
	} {
		f.Add(index("CreateTask"), uint8(sendProto), uint8(asMember), b)
		f.Add(index("CreateWorkspace"), uint8(sendProto), uint8(asMember), b)
	}

	// Compressed bodies: a real one, a bomb (64 MiB of JSON whitespace
	// in 64 KiB, past the 4 MiB limit once inflated), and a broken one.
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	for _, b := range [][]byte{
		gz([]byte(`{"name":"fuzz-gz"}`)),
		gz(append(append([]byte("{"), bytes.Repeat([]byte(" "), 64<<20)...), '}')),
		gz([]byte("{}"))[:10],
	} {
		f.Add(index("CreateWorkspace"), uint8(sendGzip), uint8(asMember), b)
		f.Add(index("ListWorkspaces"), uint8(sendGzip), uint8(asMember), b)
	}

	// DisableCompression: the fuzzer's Content-Encoding is sent as set.
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableCompression: true}}
	f.Fuzz(func(t *testing.T, proc, kind, tok uint8, body []byte) {
		p := procs[int(proc)%len(procs)]
		k := int(kind) % sendKinds
		stream := p.method.IsStreamingServer()
		if k == sendGET && (stream || !sideEffectFree(p.method)) || k == sendGzip && stream {
			k = sendJSON
		}
		if unsafeToSend(p.method, k, body) {
			return // not sent: it would start an agent, a build or a network fetch
		}
		if name := p.method.Name(); (name == "DisableUser" || name == "SetUserRole") &&
			slices.ContainsFunc(ownIDs, func(id []byte) bool { return bytes.Contains(body, id) }) {
			return // not sent: it would disable or demote the fuzzer's own account
		}
		ctx := t.Context()
		if stream {
			// A stream of a live workspace or task stays open: read what
			// comes for a while, then leave.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
		}
		req := fuzzRequest(t, ctx, srv.URL+p.path, k, stream, body)
		if token := tokens[int(tok)%asKinds]; token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// A GET whose URL is over --max-header-bytes (1 MiB) is refused by
		// net/http before berth sees it: 431, or a reset connection if
		// the server closes it while the URL is still being sent.
		tooLong := k == sendGET && len(req.URL.RequestURI()) > 1<<20
		res, err := client.Do(req)
		if err != nil {
			if stream && errors.Is(err, context.DeadlineExceeded) || tooLong {
				return
			}
			t.Fatalf("%s %s: %v", req.Method, p.path, err)
		}
		defer res.Body.Close()
		got, err := io.ReadAll(res.Body)
		if tooLong && (err != nil || res.StatusCode == http.StatusRequestHeaderFieldsTooLarge) {
			return
		}
		if err != nil && !(stream && errors.Is(err, context.DeadlineExceeded)) {
			t.Fatalf("%s %s: reading the answer: %v", req.Method, p.path, err)
		}
		if res.Header.Get("Content-Encoding") == "gzip" {
			// Compressed as the request was (the client sent no
			// Accept-Encoding).
			zr, err := gzip.NewReader(bytes.NewReader(got))
			if err != nil {
				t.Fatalf("%s: gzip answer: %v", p.path, err)
			}
			if got, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: gzip answer: %v", p.path, err)
			}
		}
		checkAnswer(t, p, k, stream, res, got)

		health, err := client.Get(srv.URL + "/health")
		if err != nil {
			t.Fatalf("/health after %s: %v", p.path, err)
		}
		_ = health.Body.Close()
		if health.StatusCode != http.StatusOK {
			t.Fatalf("/health after %s = %d", p.path, health.StatusCode)
		}
	})
}

// fuzzRequest builds the Connect request that carries body.
func fuzzRequest(t *testing.T, ctx context.Context, target string, kind int, stream bool, body []byte) *http.Request {
	t.Helper()
	method, contentType := http.MethodPost, "application/json"
	switch {
	case kind == sendGET:
		method = http.MethodGet
		target += "?" + url.Values{"connect": {"v1"}, "encoding": {"json"}, "message": {string(body)}}.Encode()
		body = nil
	case stream:
		// Server streams take one enveloped message: a flags byte and a
		// big-endian length before it.
		env := make([]byte, 5, 5+len(body))
		binary.BigEndian.PutUint32(env[1:], uint32(len(body)))
		body = append(env, body...)
		contentType = "application/connect+json"
		if kind == sendProto {
			contentType = "application/connect+proto"
		}
	case kind == sendProto:
		contentType = "application/proto"
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Connect-Protocol-Version", "1")
	}
	if kind == sendGzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	return req
}

// checkAnswer fails unless res is a well-formed Connect answer without a
// server error.
func checkAnswer(t *testing.T, p fuzzProcedure, kind int, stream bool, res *http.Response, body []byte) {
	t.Helper()
	where := fmt.Sprintf("%s (kind %d)", p.path, kind)
	if res.StatusCode == http.StatusOK && stream {
		// Envelopes; the last (flags 0x02) is the end of the stream,
		// which carries the error if there is one. A stream cut short by
		// our deadline may end mid-envelope.
		for len(body) >= 5 {
			n := int(binary.BigEndian.Uint32(body[1:5]))
			if len(body) < 5+n {
				break
			}
			if body[0]&0x02 != 0 {
				var end struct {
					Error *struct {
						Code string `json:"code"`
					} `json:"error"`
				}
				if err := json.Unmarshal(body[5:5+n], &end); err != nil {
					t.Fatalf("%s: end of stream %q is not JSON: %v", where, body[5:5+n], err)
				}
				if end.Error != nil && (!connectCodes[end.Error.Code] || end.Error.Code == "internal" || end.Error.Code == "unknown") {
					t.Fatalf("%s: stream ended with error %q: %s", where, end.Error.Code, body[5:5+n])
				}
			}
			body = body[5+n:]
		}
		return
	}
	if res.StatusCode == http.StatusOK {
		out := dynamicpb.NewMessage(p.method.Output())
		var err error
		if kind == sendProto {
			err = proto.Unmarshal(body, out)
		} else {
			err = protojson.Unmarshal(body, out)
		}
		if err != nil {
			t.Fatalf("%s: 200 with a body that is not a %s: %v", where, p.method.Output().FullName(), err)
		}
		return
	}
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil || !connectCodes[e.Code] {
		t.Fatalf("%s: %d with a body that is not a Connect error: %q (%v)", where, res.StatusCode, body, err)
	}
	if res.StatusCode >= 500 && !(res.StatusCode == http.StatusServiceUnavailable && e.Code == "unavailable") {
		t.Fatalf("%s: %d %s: %s", where, res.StatusCode, e.Code, e.Message)
	}
	if e.Code == "internal" || e.Code == "unknown" {
		t.Fatalf("%s: %d %s: %s", where, res.StatusCode, e.Code, e.Message)
	}
}
