package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// check is one dependency /ready reports on.
type check struct {
	name string
	run  func(ctx context.Context) (state string, ok bool)
}

type checkResult struct {
	State string `json:"state"`
	OK    bool   `json:"ok"`
}

// handleHealth answers liveness: the process is up and serving HTTP.
func handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers readiness: every dependency is checked (each within a
// short deadline) and listed with its state; any failure is a 503.
func handleReady(checks []check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		results := make(map[string]checkResult, len(checks))
		ready := true
		for _, c := range checks {
			state, ok := c.run(ctx)
			results[c.name] = checkResult{State: state, OK: ok}
			ready = ready && ok
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "not ready", http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": results})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
