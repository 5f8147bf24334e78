package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/ws"
)

// get sends a GET to path from the client address from (through the
// trusted proxy 127.0.0.1), with extra headers, and returns the response
// with its JSON body decoded into a map (nil when it has none).
func get(t *testing.T, srv *testServer, path, from string, headers map[string]string) (*http.Response, map[string]string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", from)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(res.Body).Decode(&body) // a body that is not a JSON object stays nil
	return res, body
}

// floodUntilLimited sends bad credentials until one is refused with 429,
// checks that every earlier answer was 401 (never 500) and that the
// budget ran out after burst of them, and returns the 429.
func floodUntilLimited(t *testing.T, what string, burst, tries int, send func() (*http.Response, map[string]string)) *http.Response {
	t.Helper()
	unauthenticated := 0
	for i := range tries {
		res, body := send()
		switch res.StatusCode {
		case http.StatusUnauthorized:
			unauthenticated++
			if body["code"] != "unauthenticated" {
				t.Fatalf("%s %d: 401 with body %v", what, i, body)
			}
		case http.StatusTooManyRequests:
			// The budget refills at 0.01/s: a slow machine may earn one more.
			if unauthenticated < burst || unauthenticated > burst+1 {
				t.Errorf("%s: 429 after %d failures, want %d", what, unauthenticated, burst)
			}
			if body["reason"] != "RATE_LIMIT_EXCEEDED" || !strings.Contains(body["message"], "failed sign-ins from your address") {
				t.Errorf("%s: 429 body %v", what, body)
			}
			return res
		default:
			t.Fatalf("%s %d: status %d (%v), want 401 until the budget runs out, then 429", what, i, res.StatusCode, body)
		}
	}
	t.Fatalf("%s: %d bad credentials, none refused with 429", what, tries)
	return nil
}

// TestStreamCredentialFailures: bad tokens, keys and tickets on the SSE
// routes and the WebSocket upgrade are 401 — a bad API key too, never 500
// — and spend the failed-sign-in budget of their address as RPCs do, so a
// flood of them ends in 429 with that class's headers.
func TestStreamCredentialFailures(t *testing.T) {
	t.Parallel()
	const burst = 10
	srv := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-auth-failures", "0.01:"+strconv.Itoa(burst))
	const id = "00000000-0000-4000-8000-000000000001"
	events := "/api/v1/workspaces/" + id + "/events"
	logs := "/api/v1/tasks/" + id + "/logs/stream"
	badKey := "berth_" + strings.Repeat("A", 43)

	cases := []struct {
		name string
		send func(from string) (*http.Response, map[string]string)
	}{
		{"bearer tokens on SSE", func(from string) (*http.Response, map[string]string) {
			return get(t, srv, events, from, map[string]string{"Authorization": "Bearer not-a-token"})
		}},
		{"API keys on SSE", func(from string) (*http.Response, map[string]string) {
			return get(t, srv, events, from, map[string]string{"X-API-Key": badKey})
		}},
		{"bearer API keys on SSE", func(from string) (*http.Response, map[string]string) {
			return get(t, srv, logs, from, map[string]string{"Authorization": "Bearer " + badKey})
		}},
		{"tickets on SSE", func(from string) (*http.Response, map[string]string) {
			return get(t, srv, logs+"?ticket=berth_tk_bogus", from, nil)
		}},
		{"tokens on /ws", func(from string) (*http.Response, map[string]string) {
			return get(t, srv, "/ws", from, map[string]string{"Authorization": "Bearer not-a-token", "Sec-WebSocket-Protocol": ws.Subprotocol})
		}},
		{"tickets on /ws", func(from string) (*http.Response, map[string]string) {
			return get(t, srv, "/ws?ticket=berth_tk_bogus", from, map[string]string{"Sec-WebSocket-Protocol": ws.Subprotocol})
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			from := "198.51.100." + strconv.Itoa(10+i) // one address per case
			res := floodUntilLimited(t, tc.name, burst, 100, func() (*http.Response, map[string]string) { return tc.send(from) })
			wantLimited(t, tc.name, res, burst)
		})
	}
}

// TestLoginRefusalsNameTheirClass: a Login refused because the account has
// no failed sign-ins left carries Retry-After and the RateLimit-* numbers
// of that class — not those of the anonymous budget it was allowed by —
// whether the refusal comes from the shared budget or from the account's
// growing throttle.
func TestLoginRefusalsNameTheirClass(t *testing.T) {
	t.Parallel()
	t.Run("budget", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-anonymous", "0.01:50", "--rate-auth-failures", "0.01:3")
		register(t, srv.clients(protocols[0]), "budget@example.com")
		bad := `{"email":"budget@example.com","password":"wrong wrong wrong"}`
		for i := range 3 {
			// A new address each time: only the account's budget runs out.
			if res := call(t, srv, "/berth.v1.AuthService/Login", "", "203.0.113."+strconv.Itoa(i+1), bad); res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("bad login %d: %d", i, res.StatusCode)
			}
		}
		res := call(t, srv, "/berth.v1.AuthService/Login", "", "203.0.113.9", `{"email":"budget@example.com","password":"correct horse battery"}`)
		wantLimited(t, "login to an account out of failures", res, 3)
	})
	t.Run("throttle", func(t *testing.T) {
		t.Parallel()
		// No shared budget: the auth service's own throttle (5 failures
		// free per account, then a growing wait) refuses.
		srv := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-anonymous", "0.01:50")
		register(t, srv.clients(protocols[0]), "throttle@example.com")
		bad := `{"email":"throttle@example.com","password":"wrong wrong wrong"}`
		for i := range 6 {
			if res := call(t, srv, "/berth.v1.AuthService/Login", "", "203.0.113.1", bad); res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("bad login %d: %d", i, res.StatusCode)
			}
		}
		res := call(t, srv, "/berth.v1.AuthService/Login", "", "203.0.113.1", bad)
		wantLimited(t, "login to a throttled account", res, 5)
	})
}

// TestRegisterConflictsSpendFailures: a Register for a taken email spends
// the address's failed-sign-in budget, so accounts cannot be probed at the
// anonymous rate.
func TestRegisterConflictsSpendFailures(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-auth-failures", "0.01:2")
	taken := `{"email":"taken@example.com","password":"correct horse battery"}`
	if res := call(t, srv, "/berth.v1.AuthService/Register", "", "192.0.2.50", taken); res.StatusCode != http.StatusOK {
		t.Fatalf("register: %d", res.StatusCode)
	}
	for i := range 2 {
		if res := call(t, srv, "/berth.v1.AuthService/Register", "", "192.0.2.51", taken); res.StatusCode != http.StatusConflict {
			t.Fatalf("register a taken email %d: %d, want 409", i, res.StatusCode)
		}
	}
	wantLimited(t, "register after 2 conflicts", call(t, srv, "/berth.v1.AuthService/Register", "", "192.0.2.51",
		`{"email":"new@example.com","password":"correct horse battery"}`), 2)
}

// TestIPv6AddressesShareTheir64: the budgets of IPv6 clients are kept per
// /64, those of IPv4 clients per address.
func TestIPv6AddressesShareTheir64(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-anonymous", "0.01:3")
	const providers = "/berth.v1.AuthService/ListAuthProviders"
	for i, from := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::7"} {
		if res := call(t, srv, providers, "", from, "{}"); res.StatusCode != http.StatusOK {
			t.Fatalf("call %d from %s: %d", i, from, res.StatusCode)
		}
	}
	wantLimited(t, "a fourth address in the same /64", call(t, srv, providers, "", "2001:db8:1:2::99", "{}"), 3)
	if res := call(t, srv, providers, "", "2001:db8:1:3::1", "{}"); res.StatusCode != http.StatusOK {
		t.Errorf("the next /64: %d, want its own budget", res.StatusCode)
	}
	for i := range 3 {
		call(t, srv, providers, "", "198.51.100."+strconv.Itoa(i+1), "{}")
	}
	if res := call(t, srv, providers, "", "198.51.100.4", "{}"); res.StatusCode != http.StatusOK {
		t.Errorf("IPv4 neighbours: %d, want a budget per address", res.StatusCode)
	}
}

// TestOIDCRoutesSpendTheAnonymousBudget: the OIDC routes spend the
// anonymous budget even when the request carries credentials (which they
// never check), and their 429 carries the headers.
func TestOIDCRoutesSpendTheAnonymousBudget(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--trusted-proxies", "127.0.0.1", "--rate-anonymous", "0.01:2")
	forged := map[string]string{"Cookie": "berth_session=forged", "Authorization": "Bearer forged"}
	for i := range 2 {
		if res, _ := get(t, srv, "/auth/oidc/nowhere/login", "192.0.2.77", forged); res.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("call %d: 429 within the budget", i)
		}
	}
	res, _ := get(t, srv, "/auth/oidc/nowhere/login", "192.0.2.77", forged)
	wantLimited(t, "third OIDC call", res, 2)
}

// TestCORSExposesRateLimitHeaders: a browser on an allowed origin can read
// the rate-limit headers, on an allowed call and on a refused one.
func TestCORSExposesRateLimitHeaders(t *testing.T) {
	t.Parallel()
	const origin = "https://console.example.com"
	srv := startServer(t, "--allowed-origins", origin, "--rate-anonymous", "0.01:2")
	const providers = "/berth.v1.AuthService/ListAuthProviders"

	preflight, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, srv.URL+providers, nil)
	if err != nil {
		t.Fatal(err)
	}
	preflight.Header.Set("Origin", origin)
	preflight.Header.Set("Access-Control-Request-Method", http.MethodPost)
	// Browsers send the names lower-cased and sorted.
	preflight.Header.Set("Access-Control-Request-Headers", "connect-protocol-version,content-type")
	res, err := http.DefaultClient.Do(preflight)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 || res.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("preflight: %d, Access-Control-Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}

	exposed := func(res *http.Response) []string {
		var names []string
		for _, v := range res.Header.Values("Access-Control-Expose-Headers") {
			for name := range strings.SplitSeq(v, ",") {
				names = append(names, http.CanonicalHeaderKey(strings.TrimSpace(name)))
			}
		}
		return names
	}
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+providers, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want || res.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("call %d: %d, Access-Control-Allow-Origin %q", i, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
		}
		names := exposed(res)
		for _, h := range []string{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", "Retry-After"} {
			if !slices.Contains(names, h) {
				t.Errorf("call %d: Access-Control-Expose-Headers %v lacks %s", i, names, h)
			}
		}
		if res.Header.Get("RateLimit-Limit") != "2" {
			t.Errorf("call %d: RateLimit-Limit %q", i, res.Header.Get("RateLimit-Limit"))
		}
		if want == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Errorf("call %d: 429 without Retry-After", i)
		}
	}
}

// TestCORSPreflightsSpendNoBudget: a CORS preflight from an allowed origin
// is answered by the CORS check and goes no further — not to the rate
// limits behind it, nor to a route — so a browser's preflights do not use
// up the anonymous budget of the calls they announce.
func TestCORSPreflightsSpendNoBudget(t *testing.T) {
	t.Parallel()
	const origin = "https://console.example.com"
	srv := startServer(t, "--allowed-origins", origin, "--rate-anonymous", "0.01:2")
	for i := range 3 {
		preflight, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, srv.URL+"/openapi.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		preflight.Header.Set("Origin", origin)
		preflight.Header.Set("Access-Control-Request-Method", http.MethodGet)
		res, err := http.DefaultClient.Do(preflight)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode/100 != 2 || res.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("preflight %d: %d, Access-Control-Allow-Origin %q", i, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	for i := range 2 {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/openapi.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %d after three preflights: %d, want 200 (the budget of 2 untouched by the preflights)", i, res.StatusCode)
		}
	}
}
