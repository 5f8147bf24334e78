package auth

import (
	"context"
	"net"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/gen/berth/v1/berthv1connect"
	"github.com/berthhq/berth/internal/store"
)

// Handler serves berth.v1.AuthService: it translates requests, calls the
// Service and returns its errors as they are (the server maps them).
type Handler struct {
	svc *Service
}

var _ berthv1connect.AuthServiceHandler = (*Handler)(nil)

// NewHandler returns the AuthService handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// Register implements berthv1connect.AuthServiceHandler.
func (h *Handler) Register(ctx context.Context, req *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
	u, tokens, err := h.svc.Register(ctx, req.GetEmail(), req.GetPassword(), req.GetName(), clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return &berthv1.RegisterResponse{User: UserToProto(u), Tokens: tokensToProto(tokens)}, nil
}

// Login implements berthv1connect.AuthServiceHandler.
func (h *Handler) Login(ctx context.Context, req *berthv1.LoginRequest) (*berthv1.LoginResponse, error) {
	u, tokens, err := h.svc.Login(ctx, req.GetEmail(), req.GetPassword(), clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return &berthv1.LoginResponse{User: UserToProto(u), Tokens: tokensToProto(tokens)}, nil
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
	return &berthv1.LogoutResponse{}, nil
}

// GetCurrentUser implements berthv1connect.AuthServiceHandler.
func (h *Handler) GetCurrentUser(ctx context.Context, _ *berthv1.GetCurrentUserRequest) (*berthv1.GetCurrentUserResponse, error) {
	p, _ := access.PrincipalFrom(ctx)
	u, err := h.svc.CurrentUser(ctx, p)
	if err != nil {
		return nil, err
	}
	return &berthv1.GetCurrentUserResponse{User: UserToProto(u)}, nil
}

// errNoAPIKeys explains the API-key RPCs this server does not offer yet.
var errNoAPIKeys = fault.New(fault.ErrUnimplemented,
	"API keys are not available on this server yet: sign in with Login and use the access token")

// CreateApiKey implements berthv1connect.AuthServiceHandler; API keys are not offered yet.
func (h *Handler) CreateApiKey(context.Context, *berthv1.CreateApiKeyRequest) (*berthv1.CreateApiKeyResponse, error) {
	return nil, errNoAPIKeys
}

// ListApiKeys implements berthv1connect.AuthServiceHandler; API keys are not offered yet.
func (h *Handler) ListApiKeys(context.Context, *berthv1.ListApiKeysRequest) (*berthv1.ListApiKeysResponse, error) {
	return nil, errNoAPIKeys
}

// RevokeApiKey implements berthv1connect.AuthServiceHandler; API keys are not offered yet.
func (h *Handler) RevokeApiKey(context.Context, *berthv1.RevokeApiKeyRequest) (*berthv1.RevokeApiKeyResponse, error) {
	return nil, errNoAPIKeys
}

// CreateStreamTicket implements berthv1connect.AuthServiceHandler; stream
// tickets arrive with the live streams.
func (h *Handler) CreateStreamTicket(context.Context, *berthv1.CreateStreamTicketRequest) (*berthv1.CreateStreamTicketResponse, error) {
	return nil, fault.New(fault.ErrUnimplemented,
		"stream tickets are not available on this server yet: it serves no SSE or WebSocket streams")
}

// ListAuthProviders implements berthv1connect.AuthServiceHandler.
func (h *Handler) ListAuthProviders(ctx context.Context, _ *berthv1.ListAuthProvidersRequest) (*berthv1.ListAuthProvidersResponse, error) {
	open, err := h.svc.RegistrationOpen(ctx)
	if err != nil {
		return nil, err
	}
	return &berthv1.ListAuthProvidersResponse{
		Providers:        []*berthv1.AuthProvider{{Name: "password", DisplayName: "Email and password"}},
		RegistrationOpen: open,
	}, nil
}

// UserToProto converts an account to its API message.
func UserToProto(u *store.User) *berthv1.User {
	out := &berthv1.User{
		Id:        u.ID,
		Email:     u.Email,
		Name:      u.Name,
		Role:      access.RoleToProto(u.Role),
		Disabled:  u.Disabled,
		CreatedAt: timestamppb.New(u.CreatedAt),
		UpdatedAt: timestamppb.New(u.UpdatedAt),
	}
	if u.LastLoginAt != nil {
		out.LastLoginAt = timestamppb.New(*u.LastLoginAt)
	}
	return out
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

// clientOf reads the caller's address and user agent from the call.
func clientOf(ctx context.Context) Client {
	info, ok := connect.CallInfoForServerContext(ctx)
	if !ok {
		return Client{}
	}
	addr := info.PeerAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return Client{SourceAddress: addr, UserAgent: info.RequestHeader().Get("User-Agent")}
}
