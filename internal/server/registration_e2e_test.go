package server_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/testsvc"
)

// raceClosedRegistration sends n Register calls at once, spread over the
// servers, to a fresh berth with registration closed, and checks that
// exactly one account was made: the admin, who then sees one account.
// Every other call is refused — FORBIDDEN, or UNAVAILABLE when it found no
// password hashing slot in time (hashing is bounded).
func raceClosedRegistration(t *testing.T, n int, servers ...*testServer) {
	t.Helper()
	type result struct {
		res *berthv1.RegisterResponse
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		c := servers[i%len(servers)].clients(protocols[0])
		wg.Go(func() {
			<-start
			res, err := c.Auth.Register(t.Context(), &berthv1.RegisterRequest{Email: fmt.Sprintf("racer%d@example.com", i), Password: "correct horse battery"})
			results[i] = result{res, err}
		})
	}
	close(start)
	wg.Wait()
	var winner *berthv1.RegisterResponse
	for i, r := range results {
		switch code := connect.CodeOf(r.err); {
		case r.err == nil:
			if winner != nil {
				t.Fatalf("registration closed: %s and %s were both created", winner.GetUser().GetEmail(), r.res.GetUser().GetEmail())
			}
			winner = r.res
		case code == connect.CodePermissionDenied:
			wantCode(t, r.err, connect.CodePermissionDenied, "FORBIDDEN")
		case code == connect.CodeUnavailable:
		default:
			t.Errorf("register %d: %v, want success for one, FORBIDDEN (or UNAVAILABLE) for the rest", i, r.err)
		}
	}
	if winner == nil {
		t.Fatal("registration closed on a fresh server: no account was created, want the first")
	}
	if winner.GetUser().GetRole() != berthv1.Role_ROLE_ADMIN {
		t.Errorf("the one account has role %v, want admin", winner.GetUser().GetRole())
	}
	for _, srv := range servers {
		c := srv.clients(protocols[0])
		users, err := c.Admin.ListUsers(as(t.Context(), winner.GetTokens().GetAccessToken()), &berthv1.ListUsersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if users.GetPagination().GetTotal() != 1 {
			t.Errorf("%d accounts exist, want 1", users.GetPagination().GetTotal())
		}
		providers, err := c.Auth.ListAuthProviders(t.Context(), &berthv1.ListAuthProvidersRequest{})
		if err != nil || providers.GetRegistrationOpen() {
			t.Errorf("ListAuthProviders after the first account: %v, %v; want registration closed", providers, err)
		}
		_, err = c.Auth.Register(t.Context(), &berthv1.RegisterRequest{Email: "late@example.com", Password: "correct horse battery"})
		wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	}
}

// TestClosedRegistrationRace: 20 registrations at once on a fresh SQLite
// server with registration closed create exactly one account.
func TestClosedRegistrationRace(t *testing.T) {
	t.Parallel()
	raceClosedRegistration(t, 20, startServer(t, "--allow-registration=false"))
}

// TestClosedRegistrationRaceAcrossInstances: the same on two instances
// sharing one Postgres database — the rule holds across them because it
// is checked in the database, under its lock.
func TestClosedRegistrationRaceAcrossInstances(t *testing.T) {
	t.Parallel()
	flags := []string{"--allow-registration=false", "--database-url", testsvc.Postgres(t),
		"--jwt-key-file", filepath.Join(t.TempDir(), "jwt.pem")}
	raceClosedRegistration(t, 20, startServer(t, flags...), startServer(t, flags...))
}
