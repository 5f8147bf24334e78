package stream

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
)

// Auth resolves who opens a stream that is not an RPC (an SSE stream, the
// WebSocket), the same way for every such transport: by a stream ticket
// (?ticket=) for the stream's target when the request has one, else by its
// credentials (Authorization header, X-API-Key header or session cookie),
// as the RPCs do. A stream outlives the request that opened it, so Auth
// also re-checks those same credentials while it is open (Credential.Recheck):
// a logout, a revoked key, a disabled account or a role change applies to
// open streams too.
type Auth struct {
	// Authenticate reads a request's credentials, as the RPCs do.
	Authenticate func(*http.Request) (access.Principal, error)
	// RedeemTicket spends a stream ticket for target.
	RedeemTicket func(ctx context.Context, ticket, target string) (access.Principal, error)
	// RecheckTicket re-validates the principal of a redeemed ticket.
	RecheckTicket func(ctx context.Context, p access.Principal) (access.Principal, error)
}

// CredentialHeaders are the request headers that carry credentials (in
// canonical form): Authenticate must read none but these, which are all a
// stream keeps of its request to re-check them.
var CredentialHeaders = [...]string{"Authorization", "X-Api-Key", "Cookie"}

// Credential is what a stream was opened with.
type Credential struct {
	// Principal is who opened the stream.
	Principal access.Principal
	// Ticketed says a stream ticket was spent for it.
	Ticketed bool
	recheck  func(context.Context) (access.Principal, error)
}

// Resolve authenticates r for the stream target ("task:<id>",
// "workspace:<id>", "ws"). With a ?ticket= query parameter it spends that
// ticket, or, when that fails, each of spare in turn (the ticket of an SSE
// resume cookie: an EventSource that reconnects sends its URL's spent
// ticket again); without one it reads r's credentials. The error is the
// first ticket's or the credentials'.
func (a Auth) Resolve(r *http.Request, target string, spare ...string) (Credential, error) {
	if ticket := r.URL.Query().Get("ticket"); ticket != "" {
		p, err := a.RedeemTicket(r.Context(), ticket, target)
		for _, t := range spare {
			if err == nil {
				break
			}
			if t == "" {
				continue
			}
			if sp, serr := a.RedeemTicket(r.Context(), t, target); serr == nil {
				p, err = sp, nil
			}
		}
		c := Credential{Principal: p, Ticketed: true}
		c.recheck = func(ctx context.Context) (access.Principal, error) { return a.RecheckTicket(ctx, c.Principal) }
		return c, err
	}
	p, err := a.Authenticate(r)
	// Only the headers that carry credentials are kept for the re-checks,
	// as their values alone: the stream holds them for as long as it is
	// open, and a header map for each is not what an idle stream should
	// cost.
	var kept [len(CredentialHeaders)][]string
	for i, k := range CredentialHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			kept[i] = slices.Clone(v)
		}
	}
	return Credential{Principal: p, recheck: func(ctx context.Context) (access.Principal, error) {
		header := make(http.Header, len(CredentialHeaders))
		for i, k := range CredentialHeaders {
			if kept[i] != nil {
				header[k] = kept[i]
			}
		}
		return a.Authenticate((&http.Request{Header: header}).WithContext(ctx))
	}}, err
}

// Recheck validates the stream's credentials again and returns the
// principal as it is now (its role may have changed).
func (c Credential) Recheck(ctx context.Context) (access.Principal, error) {
	return c.recheck(ctx)
}

// Allow returns err, or, when p's role does not grant permission, an
// ErrPermissionDenied error.
func Allow(p access.Principal, err error, permission string) error {
	if err != nil {
		return err
	}
	if !access.Allows(p.Role, permission) {
		return fault.New(fault.ErrPermissionDenied, "your role (%s) does not grant %s", p.Role, permission)
	}
	return nil
}

// Revoked reports whether a re-check's error means the stream must end —
// its principal signed out, was revoked, disabled or demoted — rather than
// that the check itself failed for a while (the store was unreachable).
func Revoked(err error) bool {
	return errors.Is(err, fault.ErrUnauthenticated) || errors.Is(err, fault.ErrPermissionDenied)
}
