package server_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// buildBerth builds cmd/berth into a temporary directory of t's.
func buildBerth(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berth")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", path, ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "cmd", "berth")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building berth: %v\n%s", err, out)
	}
	return path
}

// mustPeakRSS is peakRSS (quotabench_test.go) that fails the test on error.
func mustPeakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := peakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPasswordFloodMemory: 200 concurrent Register and Login calls from
// nobody in particular — new emails, a taken email, unknown emails, wrong
// passwords — against a real `berth serve` with its default hashing
// budget and no rate limits (the hashing bound alone is measured) keep the
// server's peak RSS under 300 MB. Every call is answered: with success,
// the expected refusal, or UNAVAILABLE when no hashing slot came free in
// time; nothing else.
func TestPasswordFloodMemory(t *testing.T) {
	t.Parallel()
	p := startBerth(t, buildBerth(t), "--rate-anonymous", "0", "--rate-auth-failures", "0", "--rate-principal", "0")
	c := p.clients(protocols[0])
	register(t, c, "taken@example.com")
	before := mustPeakRSS(t, p.cmd.Process.Pid)

	const calls = 200
	codes := make([]connect.Code, calls)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			var err error
			switch i % 4 {
			case 0: // a new account
				_, err = c.Auth.Register(t.Context(), &berthv1.RegisterRequest{Email: fmt.Sprintf("new%d@example.com", i), Password: "correct horse battery"})
			case 1: // a taken email
				_, err = c.Auth.Register(t.Context(), &berthv1.RegisterRequest{Email: "taken@example.com", Password: "correct horse battery"})
			case 2: // an unknown email
				_, err = c.Auth.Login(t.Context(), &berthv1.LoginRequest{Email: fmt.Sprintf("ghost%d@example.com", i), Password: "wrong password!"})
			case 3: // a wrong password
				_, err = c.Auth.Login(t.Context(), &berthv1.LoginRequest{Email: "taken@example.com", Password: fmt.Sprintf("wrong password %d", i)})
			}
			codes[i] = connect.CodeOf(err)
			if err == nil {
				codes[i] = 0
			}
		})
	}
	close(start)
	wg.Wait()
	counts := map[string]int{}
	for i, code := range codes {
		want := map[int][]connect.Code{
			0: {0}, 1: {connect.CodeAlreadyExists}, 2: {connect.CodeUnauthenticated},
			// The account's throttle starts refusing after 5 failures.
			3: {connect.CodeUnauthenticated, connect.CodeResourceExhausted},
		}[i%4]
		if code != connect.CodeUnavailable && !containsCode(want, code) {
			t.Errorf("call %d (kind %d): %v, want one of %v or unavailable", i, i%4, code, want)
		}
		counts[codeName(code)]++
	}
	peak := mustPeakRSS(t, p.cmd.Process.Pid)
	t.Logf("peak RSS of berth: %.0f MB before the flood, %.0f MB after %d calls; answers %v", float64(before)/1e6, float64(peak)/1e6, calls, counts)
	if peak >= 300e6 {
		t.Errorf("peak RSS %.0f MB, want under 300 MB", float64(peak)/1e6)
	}
}

func containsCode(codes []connect.Code, c connect.Code) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

func codeName(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}

// TestPasswordHashingBusy: with room for one hash at a time, a burst of
// logins is answered UNAVAILABLE (HTTP 503) for those that found no slot
// within the wait, with Retry-After and a RetryInfo.
func TestPasswordHashingBusy(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--password-hash-memory", "38")
	c := srv.clients(protocols[0])
	register(t, c, "busy@example.com")

	// 100 hashes of at least ~20ms each, one at a time, take longer than
	// the 2s a caller waits for a slot: some must be refused.
	const calls = 100
	statuses := make([]*http.Response, calls)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			statuses[i] = call(t, srv, "/berth.v1.AuthService/Login", "", "", fmt.Sprintf(`{"email":"ghost%d@example.com","password":"wrong password!"}`, i))
		})
	}
	close(start)
	wg.Wait()
	busy := 0
	for i, res := range statuses {
		switch res.StatusCode {
		case http.StatusUnauthorized:
		case http.StatusServiceUnavailable:
			busy++
			if n, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || n < 1 {
				t.Errorf("call %d: 503 with Retry-After %q", i, res.Header.Get("Retry-After"))
			}
		default:
			t.Errorf("call %d: status %d, want 401 or 503", i, res.StatusCode)
		}
	}
	if busy == 0 {
		t.Fatalf("%d logins with one hashing slot: none refused as busy", calls)
	}
	t.Logf("%d of %d logins refused as busy", busy, calls)

	// Through the client: UNAVAILABLE with a RetryInfo. Fill the slot with
	// a burst again and look for one refusal among the answers.
	errs := make([]error, calls)
	start = make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			_, errs[i] = c.Auth.Login(t.Context(), &berthv1.LoginRequest{Email: fmt.Sprintf("ghost%d@example.com", i), Password: "wrong password!"})
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if connect.CodeOf(err) != connect.CodeUnavailable {
			continue
		}
		details := wantCode(t, err, connect.CodeUnavailable, "SERVICE_UNAVAILABLE")
		for _, d := range details {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
				return
			}
		}
		t.Fatalf("UNAVAILABLE without a RetryInfo: %v", err)
	}
	t.Fatal("the second burst had no UNAVAILABLE answer")
}
