package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/fault"
)

// userEmail is an account's email as User.Email gives it, for the users
// table aliased u: its login email or, for an account without one (created
// by OIDC login), the display email of its oldest identity, or the empty string.
const userEmail = `COALESCE(u.email, (SELECT i.email FROM user_identities i WHERE i.user_id = u.id
	ORDER BY i.created_at, i.issuer, i.subject LIMIT 1), '')`

// userColumns are read with the users table aliased as u, in scanUser's order.
const userColumns = `u.id, ` + userEmail + `, u.name, u.password_hash, u.role, u.disabled,
	u.created_at, u.updated_at, u.last_login_at`

// errDuplicateEmail is what CreateUser says when the email is taken.
var errDuplicateEmail = fault.New(fault.ErrConflict, "an account with this email already exists")

// errLastAdmin is what SetUserRole and SetUserDisabled say to a change that
// would leave the server with no enabled admin, and so with nobody who can
// administer it.
var errLastAdmin = fault.New(fault.ErrFailedPrecondition,
	"the last admin cannot be demoted or disabled; make another account admin first")

// roles are the global roles, for checking arguments.
var roles = map[Role]bool{RoleAdmin: true, RoleMember: true, RoleViewer: true}

// errUnknownRole is the fault for a role that is not one of the global roles.
func errUnknownRole() error {
	return fault.Invalid("role", `must be "admin", "member" or "viewer"`)
}

// CreateUser stores a new account. The caller fills ID, Email, Name,
// PasswordHash, CreatedAt and UpdatedAt. The email is stored lower-cased, and
// an empty one as no login email at all.
//
// When u.Role is empty the role is decided inside the INSERT statement
// itself — admin for the first account, member for every later one — so two
// accounts created at once on an empty server cannot both become admin. The
// role stored is written back into u.Role, and u's times are set to their
// stored precision. A taken email is a fault.ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	return s.createUser(ctx, u, false)
}

// ErrRegistrationClosed is what CreateFirstUser says once an account
// exists.
var ErrRegistrationClosed = fault.New(fault.ErrPermissionDenied,
	"registration is closed on this server; ask an administrator for an account")

// CreateFirstUser is CreateUser for a server whose registration is closed:
// it stores u only while no account exists, and is ErrRegistrationClosed
// otherwise. The check is a condition of the INSERT itself, made under
// lockUserCreation, so of many accounts created at once on an empty server
// (on one instance or several sharing a database) exactly one is stored.
func (s *Store) CreateFirstUser(ctx context.Context, u *User) error {
	return s.createUser(ctx, u, true)
}

// createUser is CreateUser, or CreateFirstUser when onlyFirst.
func (s *Store) createUser(ctx context.Context, u *User, onlyFirst bool) error {
	email := strings.ToLower(u.Email)
	var role Role
	err := s.inTx(ctx, func(c conn) error {
		var err error
		role, err = insertUserIf(ctx, c, u, nullString(email), onlyFirst)
		return err
	})
	if s.d.isUniqueViolation(err) {
		return errDuplicateEmail
	}
	if onlyFirst && errors.Is(err, sql.ErrNoRows) {
		return ErrRegistrationClosed
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	u.Email = email
	u.Role = role
	normalizeUser(u)
	return nil
}

// insertUser inserts u with the given login email, deciding its role in the
// statement when u.Role is empty, and returns the role stored. c must be a
// transaction: it takes lockUserCreation first, without which two Postgres
// transactions could each see no account and both make an admin.
func insertUser(ctx context.Context, c conn, u *User, email sql.NullString) (Role, error) {
	return insertUserIf(ctx, c, u, email, false)
}

// insertUserIf is insertUser that, when onlyFirst, inserts nothing (and is
// sql.ErrNoRows) if any account exists: the rule is checked by the same
// statement, under the same lock, that decides the first admin.
func insertUserIf(ctx context.Context, c conn, u *User, email sql.NullString, onlyFirst bool) (Role, error) {
	if err := c.lock(ctx, lockUserCreation); err != nil {
		return "", err
	}
	var role string
	err := c.queryRow(ctx, `
		INSERT INTO users (id, email, name, password_hash, role, disabled, created_at, updated_at, last_login_at)
		SELECT ?, ?, ?, ?,
		       COALESCE(NULLIF(?, ''), CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'member' ELSE 'admin' END),
		       ?, ?, ?, ?
		WHERE ? = 0 OR NOT EXISTS (SELECT 1 FROM users)
		RETURNING role`,
		u.ID, email, u.Name, u.PasswordHash, string(u.Role), boolInt(u.Disabled),
		micros(u.CreatedAt), micros(u.UpdatedAt), nullMicros(u.LastLoginAt), boolInt(onlyFirst),
	).Scan(&role)
	return Role(role), err
}

// normalizeUser sets u's times to their stored precision.
func normalizeUser(u *User) {
	u.CreatedAt = storedTime(u.CreatedAt)
	u.UpdatedAt = storedTime(u.UpdatedAt)
	u.LastLoginAt = storedTimePtr(u.LastLoginAt)
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
	return s.findUser(ctx, "find user", `SELECT `+userColumns+` FROM users u WHERE u.id = ?`, id)
}

// FindUserByEmail returns the account whose login email is the given one,
// compared lower-cased. It never finds an account created by OIDC login,
// whose email is only for display, so such an account cannot be signed into
// with a password.
func (s *Store) FindUserByEmail(ctx context.Context, email string) (*User, error) {
	return s.findUser(ctx, "find user", `SELECT `+userColumns+` FROM users u WHERE u.email = ?`, strings.ToLower(email))
}

// findUser reads one account with query; no row is fault.NotFound("user").
func (s *Store) findUser(ctx context.Context, op, query string, args ...any) (*User, error) {
	u, err := scanUser(s.conn().queryRow(ctx, query, args...))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return u, nil
}

// ListUsers returns one page of the accounts that match f, oldest first
// (ties by id, so pages neither repeat nor skip an account), and the number
// of matching accounts on all pages. The search matches a literal substring
// of the email (as User.Email gives it) or the name, ignoring the case of
// ASCII letters (other letters match as they are, on every engine). An
// unknown Role is a fault.ErrInvalid.
func (s *Store) ListUsers(ctx context.Context, f UserFilter) ([]*User, int64, error) {
	var (
		where []string
		args  []any
	)
	if f.Role != "" {
		if !roles[f.Role] {
			return nil, 0, errUnknownRole()
		}
		where = append(where, `u.role = ?`)
		args = append(args, string(f.Role))
	}
	if f.Search != "" {
		// lower() folds the columns' ASCII letters on both engines (see
		// foldASCII); the pattern is folded alike here, not by the engine,
		// whose lower() of a bare parameter follows the database's locale.
		where = append(where, `(lower(`+userEmail+`) LIKE ? ESCAPE '\' OR lower(u.name) LIKE ? ESCAPE '\')`)
		pattern := likeContains(foldASCII(f.Search))
		args = append(args, pattern, pattern)
	}
	from := ` FROM users u`
	if len(where) > 0 {
		from += ` WHERE ` + strings.Join(where, ` AND `)
	}

	list, total, err := readPage(ctx, s, userColumns, from, args, `u.created_at, u.id`, f.Limit, f.Offset, scanUser, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	return list, total, nil
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

// SetUserRole gives the account a global role, sets its UpdatedAt to now and
// returns it as it now is. Demoting the last enabled admin is refused with a
// fault.ErrFailedPrecondition, decided in the transaction that writes, so
// two admins demoting each other at once cannot both succeed. An unknown
// role is a fault.ErrInvalid.
func (s *Store) SetUserRole(ctx context.Context, id string, role Role, now time.Time) (*User, error) {
	if !roles[role] {
		return nil, errUnknownRole()
	}
	return s.changeUser(ctx, "set user role", id, func(c conn, cur *userState) error {
		cur.role = role
		_, err := c.exec(ctx, `UPDATE users SET role = ?, updated_at = ? WHERE id = ?`, string(role), micros(now), id)
		return err
	})
}

// SetUserDisabled disables or enables the account, sets its UpdatedAt to now
// and returns it as it now is. Disabling also revokes, at now and in the same
// transaction, every session of the account not yet revoked, so its refresh
// tokens and browser cookies stop working. Disabling the last enabled admin
// is refused with a fault.ErrFailedPrecondition, as in SetUserRole.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, now time.Time) (*User, error) {
	return s.changeUser(ctx, "set user disabled", id, func(c conn, cur *userState) error {
		cur.disabled = disabled
		if _, err := c.exec(ctx, `UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?`, boolInt(disabled), micros(now), id); err != nil {
			return err
		}
		if disabled {
			_, err := revokeUserSessions(ctx, c, id, now)
			return err
		}
		return nil
	})
}

// userState is what the last-admin rule looks at in an account.
type userState struct {
	role     Role
	disabled bool
}

// enabledAdmin reports whether the account counts as an admin who can act.
func (st userState) enabledAdmin() bool { return st.role == RoleAdmin && !st.disabled }

// changeUser runs change on the account id in a write transaction, after
// reading and locking the account and every enabled admin. change writes and
// updates the state it is given to the account's new one; when the account
// was an enabled admin, is no longer one and no other enabled admin remains,
// the transaction is rolled back with errLastAdmin. It returns the account
// as the transaction left it.
//
// The rows are locked in id order, so two changes at once wait for each
// other rather than deadlock; on SQLite the transaction's write lock already
// serializes them.
func (s *Store) changeUser(ctx context.Context, op, id string, change func(c conn, cur *userState) error) (*User, error) {
	var u *User
	err := s.inTx(ctx, func(c conn) error {
		rows, err := c.query(ctx, `SELECT id, role, disabled FROM users
			WHERE id = ? OR (role = ? AND disabled = 0)
			ORDER BY id`+s.d.forUpdate(), id, string(RoleAdmin))
		if err != nil {
			return err
		}
		var (
			found  bool
			before userState
			admins int
		)
		for rows.Next() {
			var (
				rowID, role string
				disabled    int64
			)
			if err := rows.Scan(&rowID, &role, &disabled); err != nil {
				rows.Close() // #nosec G104 -- the Scan error is the one to report; Close only releases the rows
				return err
			}
			st := userState{role: Role(role), disabled: disabled != 0}
			if st.enabledAdmin() {
				admins++
			}
			if rowID == id {
				found, before = true, st
			}
		}
		err = rows.Err()
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if !found {
			return fault.NotFound("user")
		}
		after := before
		if err := change(c, &after); err != nil {
			return err
		}
		if before.enabledAdmin() && !after.enabledAdmin() && admins <= 1 {
			return errLastAdmin
		}
		u, err = scanUser(c.queryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.id = ?`, id))
		return err
	})
	if errors.Is(err, fault.ErrNotFound) || errors.Is(err, fault.ErrFailedPrecondition) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return u, nil
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

// pageBounds returns a filter's Limit and Offset as LIMIT and OFFSET
// arguments: no cap for a limit of zero or less, and no negative offset.
// readPage counts the rows that from (a " FROM … WHERE …" clause with its
// args) selects and reads one page of them (columns, in order), in one read
// transaction so the count and the page agree. after, when not nil, runs in
// the same transaction on the page read (to load what the rows refer to).
func readPage[T any](ctx context.Context, s *Store, columns, from string, args []any, order string, limit, offset int,
	scan func(scanner) (T, error), after func(c conn, list []T) error) ([]T, int64, error) {
	lim, off := pageBounds(limit, offset)
	var (
		list  = []T{}
		total int64
	)
	err := s.inReadTx(ctx, func(c conn) error {
		if err := c.queryRow(ctx, `SELECT COUNT(*)`+from, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := c.query(ctx, `SELECT `+columns+from+` ORDER BY `+order+` LIMIT ? OFFSET ?`, append(args, lim, off)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			list = append(list, v)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if after != nil {
			return after(c, list)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return list, total, nil
}

func pageBounds(limit, offset int) (int64, int64) {
	l := int64(limit)
	if l <= 0 {
		l = math.MaxInt64
	}
	return l, int64(max(offset, 0))
}
