package auth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/access"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/store"
)

// Handler serves berth.v1.AuthService: it translates requests, calls the
// Service and returns its errors as they are (the server maps them).
type Handler struct {
	svc       *Service
	providers []LoginMethod
	secure    bool // mark session cookies Secure (--secure-cookies)
}

var _ berthv1connect.AuthServiceHandler = (*Handler)(nil)

// LoginMethod is a browser login offered besides the password, such as an
// OIDC provider.
type LoginMethod struct {
	Name        string
	DisplayName string
	LoginURL    string
}

// NewHandler returns the AuthService handler for svc; providers are the
// browser logins to list in ListAuthProviders; secureCookies marks the
// session cookie a password login sets Secure (off only for plain-HTTP
// development, as for the OIDC sign-in's cookie).
func NewHandler(svc *Service, providers []LoginMethod, secureCookies bool) *Handler {
	return &Handler{svc: svc, providers: providers, secure: secureCookies}
}

// Register implements berthv1connect.AuthServiceHandler.
func (h *Handler) Register(ctx context.Context, req *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	u, tokens, err := h.svc.Register(ctx, req.GetEmail(), req.GetPassword(), req.GetName(), clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return &berthv1.RegisterResponse{User: access.UserToProto(u), Tokens: tokensToProto(tokens)}, nil
}

// Login implements berthv1connect.AuthServiceHandler.
func (h *Handler) Login(ctx context.Context, req *berthv1.LoginRequest) (*berthv1.LoginResponse, error) {
	if req.GetSessionCookie() {
		info, ok := connect.CallInfoForServerContext(ctx)
		if !ok {
			return nil, errors.New("no call info: cannot set the session cookie")
		}
		session, err := h.svc.LoginBrowser(ctx, req.GetEmail(), req.GetPassword(), clientOf(ctx))
		if err != nil {
			return nil, err
		}
		// #nosec G124 -- HttpOnly always; Secure follows --secure-cookies
		// (off only for plain-HTTP development); Lax like the OIDC
		// sign-in's cookie, which is the same session kind. Cross-site
		// state changes are refused by the server's CrossOriginProtection.
		info.ResponseHeader().Add("Set-Cookie", (&http.Cookie{
			Name: SessionCookie, Value: session.Cookie, Path: "/", Expires: session.ExpiresAt,
			HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode,
		}).String())
		return &berthv1.LoginResponse{User: access.UserToProto(session.User)}, nil
	}
	u, tokens, err := h.svc.Login(ctx, req.GetEmail(), req.GetPassword(), clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return &berthv1.LoginResponse{User: access.UserToProto(u), Tokens: tokensToProto(tokens)}, nil
}

// RefreshToken implements berthv1connect.AuthServiceHandler.
func (h *Handler) RefreshToken(ctx context.Context, req *berthv1.RefreshTokenRequest) (*berthv1.RefreshTokenResponse, error) {
	tokens, err := h.svc.Refresh(ctx, req.GetRefreshToken())
	if err != nil {
		return nil, err
	}
	return &berthv1.RefreshTokenResponse{Tokens: tokensToProto(tokens)}, nil
}

// Logout implements berthv1connect.AuthServiceHandler.
func (h *Handler) Logout(ctx context.Context, _ *berthv1.LogoutRequest) (*berthv1.LogoutResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	if err := h.svc.Logout(ctx, p); err != nil {
		return nil, err
	}
	if p.Method == access.MethodCookie {
		// Tell the browser to drop the cookie of the ended session.
		if info, ok := connect.CallInfoForServerContext(ctx); ok {
			// #nosec G124 -- this Set-Cookie deletes the cookie (no value,
			// MaxAge -1). Secure is left off so that the deletion also takes
			// on a plain-HTTP development server (--secure-cookies=false),
			// where a browser ignores a Secure Set-Cookie; on HTTPS it takes
			// either way. HttpOnly and SameSite match the cookie it deletes.
			info.ResponseHeader().Add("Set-Cookie", (&http.Cookie{
				Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode,
			}).String())
		}
	}
	return &berthv1.LogoutResponse{}, nil
}

// GetCurrentUser implements berthv1connect.AuthServiceHandler.
func (h *Handler) GetCurrentUser(ctx context.Context, _ *berthv1.GetCurrentUserRequest) (*berthv1.GetCurrentUserResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	u, err := h.svc.CurrentUser(ctx, p)
	if err != nil {
		return nil, err
	}
	return &berthv1.GetCurrentUserResponse{User: access.UserToProto(u)}, nil
}

// CreateApiKey implements berthv1connect.AuthServiceHandler.
//
//lint:ignore ST1003 the name is the generated interface's, from the proto RPC CreateApiKey
func (h *Handler) CreateApiKey(ctx context.Context, req *berthv1.CreateApiKeyRequest) (*berthv1.CreateApiKeyResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	var expires *time.Time
	if req.ExpiresAt != nil {
		t := req.GetExpiresAt().AsTime()
		expires = &t
	}
	key, k, err := h.svc.CreateAPIKey(ctx, p, NewAPIKey{
		Name: req.GetName(), Role: access.RoleFromProto(req.GetRole()), ExpiresAt: expires, ManageKeys: req.GetManageKeys(),
	})
	if err != nil {
		return nil, err
	}
	return &berthv1.CreateApiKeyResponse{ApiKey: apiKeyToProto(k), Key: key}, nil
}

// ListApiKeys implements berthv1connect.AuthServiceHandler.
//
//lint:ignore ST1003 the name is the generated interface's, from the proto RPC ListApiKeys
func (h *Handler) ListApiKeys(ctx context.Context, _ *berthv1.ListApiKeysRequest) (*berthv1.ListApiKeysResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	keys, err := h.svc.ListAPIKeys(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListApiKeysResponse{ApiKeys: make([]*berthv1.ApiKey, 0, len(keys))}
	for _, k := range keys {
		out.ApiKeys = append(out.ApiKeys, apiKeyToProto(k))
	}
	return out, nil
}

// RevokeApiKey implements berthv1connect.AuthServiceHandler.
//
//lint:ignore ST1003 the name is the generated interface's, from the proto RPC RevokeApiKey
func (h *Handler) RevokeApiKey(ctx context.Context, req *berthv1.RevokeApiKeyRequest) (*berthv1.RevokeApiKeyResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	if err := h.svc.RevokeAPIKey(ctx, p, req.GetId()); err != nil {
		return nil, err
	}
	return &berthv1.RevokeApiKeyResponse{}, nil
}

// CreateStreamTicket implements berthv1connect.AuthServiceHandler.
func (h *Handler) CreateStreamTicket(ctx context.Context, req *berthv1.CreateStreamTicketRequest) (*berthv1.CreateStreamTicketResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	ticket, expires, err := h.svc.CreateStreamTicket(ctx, p, req.GetTarget())
	if err != nil {
		return nil, err
	}
	return &berthv1.CreateStreamTicketResponse{Ticket: ticket, ExpiresAt: timestamppb.New(expires)}, nil
}

// ExchangeLoginCode implements berthv1connect.AuthServiceHandler.
func (h *Handler) ExchangeLoginCode(ctx context.Context, req *berthv1.ExchangeLoginCodeRequest) (*berthv1.ExchangeLoginCodeResponse, error) {
	u, tokens, err := h.svc.ExchangeLoginCode(ctx, req.GetCode(), req.GetCodeVerifier(), clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return &berthv1.ExchangeLoginCodeResponse{User: access.UserToProto(u), Tokens: tokensToProto(tokens)}, nil
}

// ListAuthProviders implements berthv1connect.AuthServiceHandler.
func (h *Handler) ListAuthProviders(ctx context.Context, _ *berthv1.ListAuthProvidersRequest) (*berthv1.ListAuthProvidersResponse, error) {
	open, err := h.svc.RegistrationOpen(ctx)
	if err != nil {
		return nil, err
	}
	out := &berthv1.ListAuthProvidersResponse{
		Providers:        []*berthv1.AuthProvider{{Name: "password", DisplayName: "Email and password"}},
		RegistrationOpen: open,
	}
	for _, m := range h.providers {
		out.Providers = append(out.Providers, &berthv1.AuthProvider{Name: m.Name, DisplayName: m.DisplayName, LoginUrl: m.LoginURL})
	}
	return out, nil
}

func apiKeyToProto(k *store.APIKey) *berthv1.ApiKey {
	return &berthv1.ApiKey{
		Id:         k.ID,
		Name:       k.Name,
		Prefix:     k.Prefix,
		Role:       access.RoleToProto(k.Role),
		CreatedAt:  timestamppb.New(k.CreatedAt),
		LastUsedAt: access.OptionalTime(k.LastUsedAt),
		ExpiresAt:  access.OptionalTime(k.ExpiresAt),
		RevokedAt:  access.OptionalTime(k.RevokedAt),
		ManageKeys: k.ManageKeys,
		ParentId:   k.ParentID,
	}
}

func tokensToProto(t *Tokens) *berthv1.Tokens {
	return &berthv1.Tokens{
		AccessToken:           t.AccessToken,
		TokenType:             "Bearer",
		AccessTokenExpiresAt:  timestamppb.New(t.AccessExpiresAt),
		RefreshToken:          t.RefreshToken,
		RefreshTokenExpiresAt: timestamppb.New(t.RefreshExpiresAt),
	}
}

// clientOf reads the caller's address and user agent from the request.
func clientOf(ctx context.Context) Client {
	r := access.RequestFrom(ctx)
	return Client{SourceAddress: r.SourceAddress, UserAgent: r.UserAgent}
}
