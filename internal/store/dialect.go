package store

import (
	"database/sql"
	"io/fs"
	"strconv"
	"strings"
)

// dialect is everything that differs between the SQL engines behind a Store.
// Queries are written once, in portable SQL with ? placeholders; the dialect
// rewrites them for its engine and reads the engine's errors.
type dialect interface {
	// name is the engine's name, for messages.
	name() string
	// rebind rewrites the ? placeholders of query into the engine's syntax.
	rebind(query string) string
	// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
	// violation: the row already exists.
	isUniqueViolation(err error) bool
	// isForeignKeyViolation reports whether err is a FOREIGN KEY violation:
	// a row the new one points at does not exist.
	isForeignKeyViolation(err error) bool
	// migrations returns the engine's migration files, named NNNN_name.sql.
	migrations() (fs.FS, error)
	// forUpdate is the clause a SELECT in a write transaction ends with to
	// lock the rows it reads until the transaction ends, so that a decision
	// taken on them (such as "another admin remains") still holds when the
	// transaction writes: " FOR UPDATE" on Postgres, where concurrent
	// transactions otherwise each see the other's rows as they were.
	forUpdate() string
	// skipLocked is forUpdate for a SELECT that picks one of several rows
	// any of which would do, such as the next queued task: rows another
	// transaction has locked are passed over instead of waited for.
	skipLocked() string
	// lockXact is a statement that takes the lock named key and holds it
	// until the transaction ends, serialising the transactions that take
	// it: "" where a write transaction already excludes every other one.
	lockXact(key lockKey) string
	// lockXactFor is lockXact for one lock of a family, named by a string
	// (a user's id): the statement has one ? placeholder, for the name.
	// Names that collide only serialise a little more.
	lockXactFor(family lockFamily) string
	// readTx is how a read-only transaction begins: one snapshot for all
	// its statements.
	readTx() *sql.TxOptions
	// anyText returns a string as it is written to a column that holds
	// text of any bytes, NUL included (a log line's message).
	anyText(s string) any
	// logCopy reports whether a batch of log lines is written the
	// Postgres way (appendLogsPostgres: COPY, or one INSERT of arrays for
	// a small batch), rather than as multi-row INSERTs chunked under the
	// engine's limit on bound parameters.
	logCopy() bool
}

// lockKey names a lock that lockXact takes. The values are arbitrary but
// fixed: every berth process that shares a database must agree on them.
type lockKey int64

// The locks berth takes.
const (
	// lockMigrations serialises migrations: servers starting at once apply
	// each one once, one after the other.
	lockMigrations lockKey = 0x6265727468_0001 // "berth", 1
	// lockUserCreation serialises account creation, so that of two
	// accounts created at once on an empty server only one becomes admin.
	lockUserCreation lockKey = 0x6265727468_0002
	// lockWorkspacePaths serialises workspace creation, so that of two
	// workspaces created at once with overlapping directories only one is
	// kept.
	lockWorkspacePaths lockKey = 0x6265727468_0003
)

// lockFamily names a family of locks that lockXactFor takes, one per name.
// Like lockKey the values are fixed; they are 32-bit, Postgres's two-key
// advisory locks, a space apart from lockKey's.
type lockFamily int32

// The families of locks berth takes.
const (
	// lockUserQueued serialises, per user, the count-then-insert of the
	// queued-task quota.
	lockUserQueued lockFamily = 0x62740001
	// lockUserRunning serialises, per user, the count-then-claim of the
	// running-task quota. It is apart from lockUserQueued because a claim
	// holds a workspace row (workspaceFull) while it waits for it, and a
	// task insert, holding lockUserQueued, waits for that row's key-share
	// lock: one family for both could deadlock.
	lockUserRunning lockFamily = 0x62740003
	// lockUserWorkspaces serialises, per user, the count-then-insert of
	// the workspace quota.
	lockUserWorkspaces lockFamily = 0x62740002
)

// rebindDollar rewrites ? placeholders into $1, $2, … as Postgres wants them.
// A ? inside a string literal, a quoted identifier or a comment is left as it
// is.
func rebindDollar(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case ch == '\'' || ch == '"':
			// Copy through the closing quote; a doubled quote inside is an
			// escaped one and simply closes and reopens the literal.
			j := strings.IndexByte(query[i+1:], ch)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case ch == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case ch == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+4])
			i += j + 3
		case ch == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}
