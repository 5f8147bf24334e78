package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

const userColumns = `id, email, name, password_hash, role, disabled, created_at, updated_at, last_login_at`

// errDuplicateEmail is what CreateUser says when the email is taken.
var errDuplicateEmail = fault.New(fault.ErrConflict, "an account with this email already exists")

// CreateUser stores a new account. The caller fills ID, Email, Name,
// PasswordHash, CreatedAt and UpdatedAt. The email is stored lower-cased.
//
// When u.Role is empty the role is decided inside the INSERT statement
// itself — admin for the first account, member for every later one — so two
// accounts created at once on an empty server cannot both become admin. The
// role stored is written back into u.Role, and u's times are set to their
// stored precision. A taken email is a fault.ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	email := strings.ToLower(u.Email)
	var role string
	err := s.conn().queryRow(ctx, `
		INSERT INTO users (id, email, name, password_hash, role, disabled, created_at, updated_at, last_login_at)
		SELECT ?, ?, ?, ?,
		       COALESCE(NULLIF(?, ''), CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'member' ELSE 'admin' END),
		       ?, ?, ?, ?
		RETURNING role`,
		u.ID, email, u.Name, u.PasswordHash, string(u.Role), boolInt(u.Disabled),
		micros(u.CreatedAt), micros(u.UpdatedAt), nullMicros(u.LastLoginAt),
	).Scan(&role)
	if s.d.isUniqueViolation(err) {
		return errDuplicateEmail
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	u.Email = email
	u.Role = Role(role)
	u.CreatedAt = storedTime(u.CreatedAt)
	u.UpdatedAt = storedTime(u.UpdatedAt)
	u.LastLoginAt = storedTimePtr(u.LastLoginAt)
	return nil
}

// CountUsers returns how many accounts exist, disabled ones included.
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	var n int64
	if err := s.conn().queryRow(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// FindUserByID returns the account with the given id.
func (s *Store) FindUserByID(ctx context.Context, id string) (*User, error) {
	u, err := scanUser(s.conn().queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	return u, nil
}

// FindUserByEmail returns the account with the given email, compared
// lower-cased.
func (s *Store) FindUserByEmail(ctx context.Context, email string) (*User, error) {
	u, err := scanUser(s.conn().queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE email = ?`, strings.ToLower(email)))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	return u, nil
}

// SetUserLastLogin records when the account last signed in.
func (s *Store) SetUserLastLogin(ctx context.Context, id string, at time.Time) error {
	res, err := s.conn().exec(ctx, `UPDATE users SET last_login_at = ? WHERE id = ?`, micros(at), id)
	if err != nil {
		return fmt.Errorf("set user last login: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("set user last login: %w", err)
	}
	if n == 0 {
		return fault.NotFound("user")
	}
	return nil
}

// scanUser reads one userColumns row; no row is fault.NotFound("user").
func scanUser(row scanner) (*User, error) {
	var (
		u                User
		role             string
		disabled         int64
		created, updated int64
		lastLogin        sql.NullInt64
	)
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.PasswordHash, &role, &disabled, &created, &updated, &lastLogin)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fault.NotFound("user")
	}
	if err != nil {
		return nil, err
	}
	u.Role = Role(role)
	u.Disabled = disabled != 0
	u.CreatedAt = fromMicros(created)
	u.UpdatedAt = fromMicros(updated)
	u.LastLoginAt = timePtr(lastLogin)
	return &u, nil
}
