package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/berthhq/berth/internal/fault"
)

// errDuplicateIdentity is what CreateUserWithIdentity says when the OIDC
// subject already has an account.
var errDuplicateIdentity = fault.New(fault.ErrConflict, "this identity is already linked to an account")

// FindUserByIdentity returns the account linked to the given subject of the
// OIDC provider with the given issuer. An unlinked subject is
// fault.NotFound("user").
func (s *Store) FindUserByIdentity(ctx context.Context, issuer, subject string) (*User, error) {
	return s.findUser(ctx, "find user by identity", `SELECT `+userColumns+`
		FROM users u JOIN user_identities ui ON ui.user_id = u.id
		WHERE ui.issuer = ? AND ui.subject = ?`, issuer, subject)
}

// CreateUserWithIdentity stores a new account created by OIDC login together
// with the identity that signs into it, in one transaction. The caller fills
// u as for CreateUser, except that u.Email is ignored: the account has no
// login email, so a password login can never reach it, and its email is
// id.Email, stored lower-cased, for display. The role is decided in the
// INSERT exactly as CreateUser decides it.
//
// id.UserID is set to u.ID and a zero id.CreatedAt to u.CreatedAt. The role
// stored is written back into u.Role, the display email into u.Email and
// id.Email, and the times are set to their stored precision. An identity
// already linked to an account is a fault.ErrConflict.
func (s *Store) CreateUserWithIdentity(ctx context.Context, u *User, id *Identity) error {
	email := strings.ToLower(id.Email)
	created := id.CreatedAt
	if created.IsZero() {
		created = u.CreatedAt
	}
	var role Role
	err := s.inTx(ctx, func(c conn) error {
		var err error
		if role, err = insertUser(ctx, c, u, sql.NullString{}); err != nil {
			return err
		}
		_, err = c.exec(ctx, `INSERT INTO user_identities (issuer, subject, user_id, email, created_at) VALUES (?, ?, ?, ?, ?)`,
			id.Issuer, id.Subject, u.ID, email, micros(created))
		if s.d.isUniqueViolation(err) {
			return errDuplicateIdentity
		}
		return err
	})
	switch {
	case errors.Is(err, fault.ErrConflict):
		return err
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "an account with this id already exists")
	case err != nil:
		return fmt.Errorf("create user with identity: %w", err)
	}
	u.Role = role
	u.Email = email
	normalizeUser(u)
	id.UserID = u.ID
	id.Email = email
	id.CreatedAt = storedTime(created)
	return nil
}

// SetIdentityEmail records the email the provider gave for the subject at
// its latest login, lower-cased, so an account without a login email shows a
// current one. An unlinked subject is fault.NotFound("identity").
func (s *Store) SetIdentityEmail(ctx context.Context, issuer, subject, email string) error {
	res, err := s.conn().exec(ctx, `UPDATE user_identities SET email = ? WHERE issuer = ? AND subject = ?`,
		strings.ToLower(email), issuer, subject)
	if err != nil {
		return fmt.Errorf("set identity email: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("set identity email: %w", err)
	}
	if n == 0 {
		return fault.NotFound("identity")
	}
	return nil
}
