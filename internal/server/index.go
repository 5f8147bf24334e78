package server

import (
	"encoding/json"
	"net/http"

	"github.com/berthhq/berth/internal/version"
)

// apiIndex answers GET / with a small JSON index of what the server
// serves, for a person (or a client) finding their way: the RPC services,
// the plain-HTTP routes (read when asked: they are mounted after this) and
// where the documentation is.
func apiIndex(services []string, routes func() []string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		body, _ := json.MarshalIndent(map[string]any{
			"name":       "berth",
			"version":    version.Version,
			"about":      "An API server for AI-assisted development. Every RPC is POST /<service>/<method> with a JSON body (Connect), or gRPC / gRPC-Web on the same path; side-effect-free RPCs also answer GET.",
			"docs":       "/openapi.json (also /openapi.yaml): OpenAPI 3.1 for every endpoint; /docs renders it in a browser",
			"services":   services,
			"routes":     routes(),
			"reflection": "gRPC server reflection (v1 and v1alpha) is on: grpcurl -plaintext <host> list",
		}, "", "  ")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(append(body, '\n'))
	}
}
