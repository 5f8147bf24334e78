package main

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// errorStatuses are the HTTP statuses a Connect unary call can answer with,
// each a response in components (protocol.yaml) carrying the Connect error
// body. The codes behind each status follow connect-go's
// connectCodeToHTTP (connecthttp/protocol_connect.go).
var errorStatuses = []struct{ status, response string }{
	{"400", "InvalidArgument"},
	{"401", "Unauthenticated"},
	{"403", "PermissionDenied"},
	{"404", "NotFound"},
	{"409", "Conflict"},
	{"429", "TooManyRequests"},
	{"500", "Internal"},
	{"503", "Unavailable"},
	{"504", "DeadlineExceeded"},
}

// credentials are the security requirements of a non-public RPC: any one
// of them authenticates the call.
func credentials() []any {
	return []any{obj("bearerAuth", []any{}), obj("apiKeyHeader", []any{}), obj("sessionCookie", []any{})}
}

// service adds the operations of sd's methods to paths and returns its tag.
func (g *generator) service(sd protoreflect.ServiceDescriptor, paths *object) (*object, error) {
	tag := obj("name", string(sd.Name()), "description", nonEmpty(g.docs.of(sd)))
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		item, err := g.method(md)
		if err != nil {
			return nil, err
		}
		paths.set(fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()), item)
	}
	return tag, nil
}

// method is the path item of one RPC: POST always, GET as well for
// side-effect-free unary methods (Connect GET).
func (g *generator) method(md protoreflect.MethodDescriptor) (*object, error) {
	rule, _ := proto.GetExtension(md.Options(), berthv1.E_Access).(*berthv1.AccessRule)
	if rule == nil || (!rule.GetPublic() && rule.GetPermission() == "") {
		return nil, fmt.Errorf("%s has no (berth.v1.access) rule; the server would refuse to start", md.FullName())
	}
	security := []any{} // public: an explicit empty list, overriding nothing
	accessNote := "**Access:** public; no credentials needed."
	if !rule.GetPublic() {
		security = credentials()
		accessNote = fmt.Sprintf("**Access:** needs the `%s` permission (see the role table in the README); "+
			"send an access token or API key as a Bearer token, an API key in X-API-Key, or the browser session cookie.", rule.GetPermission())
	}
	desc := join(g.docs.of(md), accessNote)
	svc := string(md.Parent().Name())
	base := func(id string) *object {
		return obj("tags", []any{svc}, "summary", summary(md, g.docs.of(md)), "operationId", id,
			"description", desc, "security", security)
	}
	if md.IsStreamingClient() {
		return nil, fmt.Errorf("%s: client streaming is not served over Connect JSON here", md.FullName())
	}
	if md.IsStreamingServer() {
		op := base(svc + "_" + string(md.Name()))
		op.set("description", join(desc, streamNote))
		op.set("parameters", []any{paramRef("ConnectTimeout")})
		op.set("requestBody", obj("required", true, "content", obj("application/connect+json", obj("schema",
			obj("type", "string", "contentMediaType", "application/connect+json", "contentSchema", g.schemas.ref(md.Input()),
				"description", "One enveloped frame (flags 0x00) whose payload is the JSON request.")))))
		op.set("responses", obj("200", obj(
			"description", "The stream: one frame per message, then the end-stream frame (flag 0x02), which carries the error, if any.",
			"headers", okHeaders(),
			"content", obj("application/connect+json", obj("schema", obj("type", "string", "contentMediaType", "application/connect+json",
				"contentSchema", obj("anyOf", []any{g.schemas.ref(md.Output()), schemaRef("connect.EndStream")}),
				"description", "Enveloped frames: messages, then one end-stream frame.")))),
			"429", responseRef("TooManyRequests")))
		return obj("post", op), nil
	}
	post := base(svc + "_" + string(md.Name()))
	post.set("parameters", []any{paramRef("ConnectProtocolVersion"), paramRef("ConnectTimeout")})
	post.set("requestBody", obj("required", true, "content", obj("application/json", obj("schema", g.schemas.ref(md.Input())))))
	post.set("responses", g.unaryResponses(md))
	item := obj("post", post)
	if opts, _ := md.Options().(*descriptorpb.MethodOptions); opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
		get := base(svc + "_" + string(md.Name()) + "_get")
		get.set("description", join(desc, getNote))
		get.set("parameters", []any{
			paramRef("ConnectGetEncoding"),
			obj("name", "message", "in", "query", "required", true,
				"description", "The request as JSON, URL-encoded (or, with base64=1, as unpadded base64url of the JSON).",
				"content", obj("application/json", obj("schema", g.schemas.ref(md.Input())))),
			paramRef("ConnectGetBase64"),
			paramRef("ConnectGetCompression"),
			paramRef("ConnectGetVersion"),
			paramRef("ConnectTimeout"),
		})
		get.set("responses", g.unaryResponses(md))
		item.set("get", get)
	}
	return item, nil
}

// unaryResponses are a unary RPC's answers: the response message, or a
// Connect error with its HTTP status.
func (g *generator) unaryResponses(md protoreflect.MethodDescriptor) *object {
	r := obj("200", obj("description", "The response message.", "headers", okHeaders(),
		"content", obj("application/json", obj("schema", g.schemas.ref(md.Output())))))
	for _, e := range errorStatuses {
		r.set(e.status, responseRef(e.response))
	}
	return r
}

// okHeaders are the headers of a successful answer.
func okHeaders() *object {
	return obj("X-Request-Id", headerRef("XRequestId"), "RateLimit-Limit", headerRef("RateLimitLimit"),
		"RateLimit-Remaining", headerRef("RateLimitRemaining"), "RateLimit-Reset", headerRef("RateLimitReset"))
}

// summary is the first sentence of the method's comment, or its name.
func summary(md protoreflect.MethodDescriptor, doc string) string {
	doc = oneLine(doc)
	if i := strings.Index(doc, ". "); i > 0 {
		doc = doc[:i+1]
	}
	if doc == "" || len(doc) > 120 {
		return string(md.Name())
	}
	return doc
}

func paramRef(name string) *object    { return obj("$ref", "#/components/parameters/"+name) }
func responseRef(name string) *object { return obj("$ref", "#/components/responses/"+name) }
func headerRef(name string) *object   { return obj("$ref", "#/components/headers/"+name) }
func schemaRef(name string) *object   { return obj("$ref", "#/components/schemas/"+name) }

// getNote explains Connect GET.
const getNote = "**Connect GET.** This method has no side effects " +
	"(`idempotency_level = NO_SIDE_EFFECTS`), so it is also served as a GET whose query carries the request: " +
	"`?encoding=json&message=<URL-encoded JSON>` (add `&base64=1` to send the JSON as unpadded base64url, " +
	"`&compression=gzip` for a compressed message, `&connect=v1` for the protocol version). " +
	"GET answers can be cached and bookmarked; the answers and errors are the POST's."

// streamNote explains the Connect streaming wire format.
const streamNote = "**Connect server stream.** POST with `Content-Type: application/connect+json`. " +
	"Both bodies are sequences of enveloped frames: 1 byte of flags, a 4-byte big-endian length, then that many " +
	"bytes of JSON. The request is one frame (flags 0x00) holding the request message. The response is one frame " +
	"(flags 0x00) per response message, then exactly one end-stream frame (flags 0x02) holding " +
	"`{\"error\": {…connect.Error…}, \"metadata\": {…trailers…}}` (`error` absent on success). " +
	"Errors, including authentication and validation failures, arrive in the end-stream frame with HTTP status 200. " +
	"The same path serves gRPC and gRPC-Web server streams (grpcurl, buf curl)."
