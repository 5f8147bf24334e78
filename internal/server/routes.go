package server

import "net/http"

// routeMux is the server's ServeMux, remembering every pattern registered
// on it: the patterns are the list of what the server serves, which a test
// checks against the OpenAPI document (a route added without documenting
// it fails the test).
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Handle registers handler for pattern, as http.ServeMux.Handle does.
func (m *routeMux) Handle(pattern string, handler http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, handler)
}

// HandleFunc registers handler for pattern, as http.ServeMux.HandleFunc does.
func (m *routeMux) HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, handler)
}

// Routes lists the patterns of the main listener's mux, in the order they
// were registered ("GET /health", "/berth.v1.AuthService/Login", …).
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }
