package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/berthhq/berth/internal/fault"
)

const auditColumns = `id, time, action, outcome, actor_id, target_type, target_id, source_address, request_id, details`

// AppendAudit stores an audit event. The caller fills every field; empty
// Details are stored as none and read back as an empty map. An id that is
// taken is a fault.ErrConflict. e.Time is set to its stored precision and nil
// Details to an empty map.
func (s *Store) AppendAudit(ctx context.Context, e *AuditEvent) error {
	var details sql.NullString
	if len(e.Details) > 0 {
		doc, err := encodeMetadata(e.Details)
		if err != nil {
			return fmt.Errorf("append audit event: %w", err)
		}
		details = sql.NullString{String: doc, Valid: true}
	}
	_, err := s.conn().exec(ctx, `INSERT INTO audit_events (`+auditColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, micros(e.Time), e.Action, e.Outcome, e.ActorID, e.TargetType, e.TargetID,
		e.SourceAddress, e.RequestID, details)
	switch {
	case s.d.isUniqueViolation(err):
		return fault.New(fault.ErrConflict, "an audit event with this id already exists")
	case err != nil:
		return fmt.Errorf("append audit event: %w", err)
	}
	e.Time = storedTime(e.Time)
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	return nil
}

// ListAuditEvents returns one page of the audit events that match f, newest
// first (ties by id, descending, so pages neither repeat nor skip an event),
// and the number of matching events on all pages.
func (s *Store) ListAuditEvents(ctx context.Context, f AuditFilter) ([]*AuditEvent, int64, error) {
	var (
		where []string
		args  []any
	)
	for _, c := range []struct{ column, value string }{
		{"action", f.Action}, {"actor_id", f.ActorID}, {"target_id", f.TargetID},
	} {
		if c.value != "" {
			where = append(where, c.column+` = ?`)
			args = append(args, c.value)
		}
	}
	from := ` FROM audit_events`
	if len(where) > 0 {
		from += ` WHERE ` + strings.Join(where, ` AND `)
	}
	list, total, err := readPage(ctx, s, auditColumns, from, args, `time DESC, id DESC`, f.Limit, f.Offset, scanAuditEvent, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("list audit events: %w", err)
	}
	return list, total, nil
}

// scanAuditEvent reads one auditColumns row.
func scanAuditEvent(row scanner) (*AuditEvent, error) {
	var (
		e       AuditEvent
		at      int64
		details sql.NullString
	)
	if err := row.Scan(&e.ID, &at, &e.Action, &e.Outcome, &e.ActorID, &e.TargetType, &e.TargetID,
		&e.SourceAddress, &e.RequestID, &details); err != nil {
		return nil, err
	}
	e.Time = fromMicros(at)
	var err error
	if e.Details, err = decodeMetadata(details.String); err != nil {
		return nil, fmt.Errorf("audit event %s: %w", e.ID, err)
	}
	return &e, nil
}
