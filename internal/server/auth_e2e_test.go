package server_test

import (
	"errors"
	"testing"

	"connectrpc.com/connect/v2"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// TestAccountLifecycle runs register, login, refresh, reuse of an old
// refresh token, logout and the current-user call over every protocol.
func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for i, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := srv.clients(p)
			ctx := t.Context()
			email := p.name + "@example.com"
			reg := register(t, c, email)
			if reg.GetUser().GetEmail() != email || reg.GetTokens().GetTokenType() != "Bearer" {
				t.Fatalf("Register = %v", reg)
			}
			// The first account on the server is the admin; the protocols run
			// in order, so only the first subtest registers it.
			wantRole := berthv1.Role_ROLE_MEMBER
			if i == 0 {
				wantRole = berthv1.Role_ROLE_ADMIN
			}
			if got := reg.GetUser().GetRole(); got != wantRole {
				t.Errorf("role = %v, want %v", got, wantRole)
			}

			_, err := c.Auth.Register(ctx, &berthv1.RegisterRequest{Email: email, Password: "another long password"})
			wantCode(t, err, connect.CodeAlreadyExists, "CONFLICT")

			_, err = c.Auth.Login(ctx, &berthv1.LoginRequest{Email: email, Password: "wrong password!!"})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
			wrongPassword := errMessage(err)
			_, err = c.Auth.Login(ctx, &berthv1.LoginRequest{Email: "nobody-" + email, Password: "wrong password!!"})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
			if a, b := errMessage(err), wrongPassword; a != b {
				t.Errorf("unknown-account error %q differs from wrong-password error %q", a, b)
			}

			login, err := c.Auth.Login(ctx, &berthv1.LoginRequest{Email: " " + email + " ", Password: "correct horse battery"})
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			me, err := c.Auth.GetCurrentUser(as(ctx, login.GetTokens().GetAccessToken()), &berthv1.GetCurrentUserRequest{})
			if err != nil {
				t.Fatalf("GetCurrentUser: %v", err)
			}
			if me.GetUser().GetId() != reg.GetUser().GetId() || me.GetUser().GetLastLoginAt() == nil {
				t.Errorf("GetCurrentUser = %v", me.GetUser())
			}

			refreshed, err := c.Auth.RefreshToken(ctx, &berthv1.RefreshTokenRequest{RefreshToken: login.GetTokens().GetRefreshToken()})
			if err != nil {
				t.Fatalf("RefreshToken: %v", err)
			}
			if refreshed.GetTokens().GetRefreshToken() == login.GetTokens().GetRefreshToken() {
				t.Fatal("refresh token was not rotated")
			}
			// The old refresh token is rejected, and presenting it revokes the
			// session: the new refresh token stops working too.
			_, err = c.Auth.RefreshToken(ctx, &berthv1.RefreshTokenRequest{RefreshToken: login.GetTokens().GetRefreshToken()})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
			_, err = c.Auth.RefreshToken(ctx, &berthv1.RefreshTokenRequest{RefreshToken: refreshed.GetTokens().GetRefreshToken()})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

			// Logout ends the registration session: its refresh token fails.
			if _, err := c.Auth.Logout(as(ctx, reg.GetTokens().GetAccessToken()), &berthv1.LogoutRequest{}); err != nil {
				t.Fatalf("Logout: %v", err)
			}
			_, err = c.Auth.RefreshToken(ctx, &berthv1.RefreshTokenRequest{RefreshToken: reg.GetTokens().GetRefreshToken()})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")

			_, err = c.Auth.GetCurrentUser(ctx, &berthv1.GetCurrentUserRequest{})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
			_, err = c.Auth.GetCurrentUser(as(ctx, "not-a-jwt"), &berthv1.GetCurrentUserRequest{})
			wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHORIZED")
		})
	}
}

func errMessage(err error) string {
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		return ce.Message()
	}
	return err.Error()
}

// TestRegistrationRules covers closed registration, the password rules and
// request validation with field violations.
func TestRegistrationRules(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--allow-registration=false")
	c := srv.clients(protocols[0])
	ctx := t.Context()

	open, err := c.Auth.ListAuthProviders(ctx, &berthv1.ListAuthProvidersRequest{})
	if err != nil || !open.GetRegistrationOpen() {
		t.Fatalf("before the first account registration must be open: %v %v", open, err)
	}
	// The first account can always be registered, so a closed server can be
	// set up; after it registration is closed.
	admin := register(t, c, "root@example.com")
	if admin.GetUser().GetRole() != berthv1.Role_ROLE_ADMIN {
		t.Fatalf("first account role = %v", admin.GetUser().GetRole())
	}
	_, err = c.Auth.Register(ctx, &berthv1.RegisterRequest{Email: "second@example.com", Password: "correct horse battery"})
	wantCode(t, err, connect.CodePermissionDenied, "FORBIDDEN")
	open, err = c.Auth.ListAuthProviders(ctx, &berthv1.ListAuthProvidersRequest{})
	if err != nil || open.GetRegistrationOpen() || len(open.GetProviders()) != 1 || open.GetProviders()[0].GetName() != "password" {
		t.Fatalf("ListAuthProviders = %v, %v", open, err)
	}

	for _, tc := range []struct {
		name   string
		req    *berthv1.RegisterRequest
		fields []string
	}{
		{"short password", &berthv1.RegisterRequest{Email: "a@example.com", Password: "short"}, []string{"password"}},
		{"bad email", &berthv1.RegisterRequest{Email: "not-an-email", Password: "correct horse battery"}, []string{"email"}},
		{"both", &berthv1.RegisterRequest{Email: "", Password: ""}, []string{"email", "password"}},
		{"password is email", &berthv1.RegisterRequest{Email: "same.as.password@example.com", Password: "same.as.password@example.com"}, []string{"password"}},
	} {
		_, err := c.Auth.Register(ctx, tc.req)
		details := wantCode(t, err, connect.CodeInvalidArgument, "VALIDATION_ERROR")
		got := fieldViolations(details)
		if len(got) != len(tc.fields) {
			t.Errorf("%s: violations %v, want %v", tc.name, got, tc.fields)
			continue
		}
		for i := range got {
			if got[i] != tc.fields[i] {
				t.Errorf("%s: violations %v, want %v", tc.name, got, tc.fields)
			}
		}
	}
}
