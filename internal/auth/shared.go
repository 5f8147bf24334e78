package auth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/berthhq/berth/internal/cache"
	"github.com/berthhq/berth/internal/store"
)

// sharedReads caches, in Valkey, the records every authenticated request
// reads — sessions, accounts and API keys — so that several instances
// serve them from memory (Valkey's client-side caching) and a logout, a
// revoked key, a disabled account or a role change on any instance is
// seen by every instance on its next request. Only what authentication
// needs is cached: never a password hash.
type sharedReads struct {
	sessions, users, keys *cache.Cache
}

// SharedCaches are the caches (normally Valkey-backed) through which
// authentication reads sessions, accounts and API keys when
// Config.Shared is set.
type SharedCaches struct {
	Sessions, Users, Keys *cache.Cache
}

// cachedSession is what authentication reads of a session.
type cachedSession struct {
	ID        string     `json:"id"`
	UserID    string     `json:"u"`
	ExpiresAt time.Time  `json:"exp"`
	RevokedAt *time.Time `json:"rev,omitempty"`
	Cookie    []byte     `json:"c,omitempty"`
}

// cachedUser is what authentication reads of an account.
type cachedUser struct {
	ID       string     `json:"id"`
	Role     store.Role `json:"r"`
	Disabled bool       `json:"d"`
}

// cachedKey is what authentication reads of an API key.
type cachedKey struct {
	ID        string     `json:"id"`
	UserID    string     `json:"u"`
	KeyHash   []byte     `json:"h"`
	Role      store.Role `json:"r"`
	ExpiresAt *time.Time `json:"exp,omitempty"`
	RevokedAt *time.Time `json:"rev,omitempty"`
	// AncestorRevoked: a key above this one is revoked (see
	// store.APIKey).
	AncestorRevoked bool `json:"ar,omitempty"`
	// ManageKeys: the key was created with manage_keys. Absent in entries
	// cached before it existed, which then read as false: the safe side.
	ManageKeys bool `json:"mk,omitempty"`
}

// sharedGet reads key through c, loading it with load and encoding it as
// JSON on a miss.
func sharedGet[T any](ctx context.Context, c *cache.Cache, key string, load func() (T, error)) (T, error) {
	var v T
	b, err := c.Get(ctx, key, func(context.Context) ([]byte, error) {
		loaded, err := load()
		if err != nil {
			return nil, err
		}
		return json.Marshal(loaded)
	})
	if err != nil {
		return v, err
	}
	err = json.Unmarshal(b, &v)
	return v, err
}

func sessionOf(c cachedSession) *store.Session {
	return &store.Session{ID: c.ID, UserID: c.UserID, ExpiresAt: c.ExpiresAt, RevokedAt: c.RevokedAt, CookieHash: c.Cookie}
}

func toCachedSession(sess *store.Session) cachedSession {
	return cachedSession{ID: sess.ID, UserID: sess.UserID, ExpiresAt: sess.ExpiresAt, RevokedAt: sess.RevokedAt, Cookie: sess.CookieHash}
}

// findSession reads a session by id.
func (s *Service) findSession(ctx context.Context, id string) (*store.Session, error) {
	if s.shared == nil {
		return s.store.FindSession(ctx, id)
	}
	return s.sharedSession(ctx, "id:"+id, func() (*store.Session, error) { return s.store.FindSession(ctx, id) })
}

// findSessionByCookie reads a browser session by its cookie's hash.
func (s *Service) findSessionByCookie(ctx context.Context, hash []byte) (*store.Session, error) {
	if s.shared == nil {
		return s.store.FindSessionByCookie(ctx, hash)
	}
	return s.sharedSession(ctx, "cookie:"+hex.EncodeToString(hash), func() (*store.Session, error) {
		return s.store.FindSessionByCookie(ctx, hash)
	})
}

// sharedSession reads a session through the shared cache under key.
func (s *Service) sharedSession(ctx context.Context, key string, load func() (*store.Session, error)) (*store.Session, error) {
	c, err := sharedGet(ctx, s.shared.sessions, key, func() (cachedSession, error) {
		sess, err := load()
		if err != nil {
			return cachedSession{}, err
		}
		return toCachedSession(sess), nil
	})
	if err != nil {
		return nil, err
	}
	return sessionOf(c), nil
}

// findUser reads the account fields authentication needs (ID, Role,
// Disabled).
func (s *Service) findUser(ctx context.Context, id string) (*store.User, error) {
	if s.shared == nil {
		return s.store.FindUserByID(ctx, id)
	}
	c, err := sharedGet(ctx, s.shared.users, id, func() (cachedUser, error) {
		u, err := s.store.FindUserByID(ctx, id)
		if err != nil {
			return cachedUser{}, err
		}
		return cachedUser{ID: u.ID, Role: u.Role, Disabled: u.Disabled}, nil
	})
	if err != nil {
		return nil, err
	}
	return &store.User{ID: c.ID, Role: c.Role, Disabled: c.Disabled}, nil
}

// findKey reads an API key by its lookup prefix; touch runs when it was
// read from the store rather than the cache (to note the key's use at most
// once per cache lifetime).
func (s *Service) findKey(ctx context.Context, prefix string, touch func(*store.APIKey) error) (*store.APIKey, error) {
	if s.shared == nil {
		k, err := s.store.FindAPIKeyByPrefix(ctx, prefix)
		if err == nil {
			err = touch(k)
		}
		return k, err
	}
	c, err := sharedGet(ctx, s.shared.keys, prefix, func() (cachedKey, error) {
		k, err := s.store.FindAPIKeyByPrefix(ctx, prefix)
		if err != nil {
			return cachedKey{}, err
		}
		if err := touch(k); err != nil {
			return cachedKey{}, err
		}
		return cachedKey{ID: k.ID, UserID: k.UserID, KeyHash: k.KeyHash, Role: k.Role, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt,
			AncestorRevoked: k.AncestorRevoked, ManageKeys: k.ManageKeys}, nil
	})
	if err != nil {
		return nil, err
	}
	return &store.APIKey{ID: c.ID, UserID: c.UserID, Prefix: prefix, KeyHash: c.KeyHash, Role: c.Role, ExpiresAt: c.ExpiresAt, RevokedAt: c.RevokedAt,
		AncestorRevoked: c.AncestorRevoked, ManageKeys: c.ManageKeys}, nil
}

// invalidateSession drops a session from the shared cache, both ways it is
// read.
func (s *Service) invalidateSession(ctx context.Context, sess *store.Session) {
	if s.shared == nil {
		return
	}
	keys := []string{"id:" + sess.ID}
	if sess.CookieHash != nil {
		keys = append(keys, "cookie:"+hex.EncodeToString(sess.CookieHash))
	}
	s.shared.sessions.Invalidate(ctx, keys...)
}
