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

// workspaceColumns are read with the table aliased as w, in scanWorkspace's order.
const workspaceColumns = `w.id, w.owner_id, w.name, w.description, w.path, w.status, w.status_reason,
	w.git_url, w.branch, w.tags, w.metadata, w.image, w.image_id, w.container_id, w.managed,
	w.memory_mb, w.cpus, w.pids, w.disk_usage_mb, w.created_at, w.updated_at`

// viewerJoin joins the reading viewer's membership, if any, to each
// workspace w; its one argument is the viewer's user id.
const viewerJoin = ` LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = ?`

// viewerCanSee is the visibility rule for a viewer who is not an admin: the
// owner and the members see a workspace. Its one argument is the viewer's
// user id; it needs viewerJoin.
const viewerCanSee = `(w.owner_id = ? OR m.user_id IS NOT NULL)`

// workspaceSorts is the whitelist of ListWorkspaces orders. Each ends with the
// id, so rows that tie still come in one order and pages neither repeat nor
// skip a row.
var workspaceSorts = map[string]string{
	"":            `w.created_at DESC, w.id DESC`,
	"-created_at": `w.created_at DESC, w.id DESC`,
	"created_at":  `w.created_at ASC, w.id ASC`,
	"name":        `lower(w.name) ASC, w.name ASC, w.id ASC`,
	"-name":       `lower(w.name) DESC, w.name DESC, w.id DESC`,
}

// workspaceStatuses are the stored workspace states, for checking filters.
var workspaceStatuses = map[WorkspaceStatus]bool{
	WorkspaceCreating: true, WorkspaceStopped: true, WorkspaceStarting: true, WorkspaceRunning: true,
	WorkspaceStopping: true, WorkspaceError: true, WorkspaceArchived: true,
}

// duplicateWorkspace is the conflict of two workspaces of one owner with one name.
func duplicateWorkspace(name string) error {
	return fault.New(fault.ErrConflict, "a workspace named %q already exists", name)
}

// CreateWorkspace stores a new workspace. The caller fills every field but
// Stats and AccessRole. A second workspace of the same owner with the same
// name is a fault.ErrConflict, and so is one whose Path is the path of
// another workspace, or inside it, or around it (checked and inserted
// atomically, whoever owns the other); an owner that does not exist is
// fault.NotFound("user"). Nil Tags and Metadata are stored empty, and w's
// times are set to their stored precision.
func (s *Store) CreateWorkspace(ctx context.Context, w *Workspace) error {
	return s.CreateWorkspaceWithin(ctx, w, 0)
}

// CreateWorkspaceWithin is CreateWorkspace under the owner's quota: when
// maxOwned > 0 and w.OwnerID already owns maxOwned workspaces (archived
// ones included), nothing is stored and the call is a
// fault.ErrResourceExhausted naming the quota. The count and the insert are
// one transaction, serialised per owner, so calls at once never exceed it.
func (s *Store) CreateWorkspaceWithin(ctx context.Context, w *Workspace, maxOwned int64) error {
	tags, err := encodeTags(w.Tags)
	if err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	meta, err := encodeMetadata(w.Metadata)
	if err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	err = s.inTx(ctx, func(c conn) error {
		if q := s.d.lockXact(lockWorkspacePaths); q != "" {
			if _, err := c.exec(ctx, q); err != nil {
				return fmt.Errorf("take lock: %w", err)
			}
		}
		if maxOwned > 0 {
			if err := c.lockFor(ctx, lockUserWorkspaces, w.OwnerID); err != nil {
				return err
			}
			var n int64
			if err := c.queryRow(ctx, `SELECT COUNT(*) FROM workspaces WHERE owner_id = ?`, w.OwnerID).Scan(&n); err != nil {
				return fmt.Errorf("count workspaces: %w", err)
			}
			if n >= maxOwned {
				return fault.New(fault.ErrResourceExhausted,
					"quota max-workspaces-per-user (%d) reached: you own %d workspaces (archived ones count); delete one first", maxOwned, n)
			}
		}
		others, err := overlapping(ctx, c, w.Path, w.ID)
		if err != nil {
			return err
		}
		if len(others) > 0 {
			return errOverlap
		}
		_, err = c.exec(ctx, `
			INSERT INTO workspaces (id, owner_id, name, description, path, status, status_reason,
				git_url, branch, tags, metadata, image, image_id, container_id, managed,
				memory_mb, cpus, pids, disk_usage_mb, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			w.ID, w.OwnerID, w.Name, w.Description, w.Path, string(w.Status), w.StatusReason,
			w.GitURL, w.Branch, tags, meta, w.Image, w.ImageID, w.ContainerID, boolInt(w.Managed),
			w.MemoryMB, w.CPUs, w.Pids, w.DiskUsageMB, micros(w.CreatedAt), micros(w.UpdatedAt))
		return err
	})
	switch {
	case errors.Is(err, errOverlap), errors.Is(err, fault.ErrResourceExhausted):
		return err
	case s.d.isUniqueViolation(err):
		return duplicateWorkspace(w.Name)
	case s.d.isForeignKeyViolation(err):
		return fault.NotFound("user")
	case err != nil:
		return fmt.Errorf("create workspace: %w", err)
	}
	if w.Tags == nil {
		w.Tags = []string{}
	}
	if w.Metadata == nil {
		w.Metadata = map[string]string{}
	}
	w.CreatedAt = storedTime(w.CreatedAt)
	w.UpdatedAt = storedTime(w.UpdatedAt)
	return nil
}

// FindWorkspace returns the workspace with the given id as v sees it: with
// v's AccessRole in it and its task Stats. A workspace v may not see — v is
// neither an admin, nor its owner, nor a member — is not found, exactly like
// one that does not exist, so ids cannot be probed.
func (s *Store) FindWorkspace(ctx context.Context, id string, v Viewer) (*Workspace, error) {
	var w *Workspace
	err := s.inReadTx(ctx, func(c conn) error {
		var err error
		w, err = findWorkspace(ctx, c, id, &v)
		if err != nil {
			return err
		}
		return loadWorkspaceStats(ctx, c, []*Workspace{w})
	})
	if errors.Is(err, fault.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("find workspace: %w", err)
	}
	return w, nil
}

// findWorkspace reads one workspace through v, or with no access check and
// no AccessRole when v is nil. Stats are left for the caller.
func findWorkspace(ctx context.Context, c conn, id string, v *Viewer) (*Workspace, error) {
	if v == nil {
		row := c.queryRow(ctx, `SELECT `+workspaceColumns+`, NULL FROM workspaces w WHERE w.id = ?`, id)
		w, _, err := scanWorkspace(row)
		return w, err
	}
	q := `SELECT ` + workspaceColumns + `, m.role FROM workspaces w` + viewerJoin + ` WHERE w.id = ?`
	args := []any{v.UserID, id}
	if !v.Admin {
		q += ` AND ` + viewerCanSee
		args = append(args, v.UserID)
	}
	w, memberRole, err := scanWorkspace(c.queryRow(ctx, q, args...))
	if err != nil {
		return nil, err
	}
	w.AccessRole = accessRole(w, memberRole, *v)
	return w, nil
}

// ListWorkspaces returns one page of the workspaces f.Viewer may see that
// match f, each with the viewer's AccessRole and its task Stats, and the
// number of matching workspaces on all pages. The search matches a literal
// substring of the name or the description, ignoring the case of ASCII
// letters (see ListUsers). An unknown
// Sort or Status is a fault.ErrInvalid.
func (s *Store) ListWorkspaces(ctx context.Context, f WorkspaceFilter) ([]*Workspace, int64, error) {
	order, ok := workspaceSorts[f.Sort]
	if !ok {
		return nil, 0, fault.Invalid("sort", `must be one of "name", "-name", "created_at" or "-created_at"`)
	}
	from := ` FROM workspaces w` + viewerJoin
	args := []any{f.Viewer.UserID}
	var where []string
	if !f.Viewer.Admin {
		where = append(where, viewerCanSee)
		args = append(args, f.Viewer.UserID)
	}
	switch st := WorkspaceStatus(f.Status); {
	case f.Status == "":
	case f.Status == "active":
		where = append(where, `w.status <> ?`)
		args = append(args, string(WorkspaceArchived))
	case workspaceStatuses[st]:
		where = append(where, `w.status = ?`)
		args = append(args, string(st))
	default:
		return nil, 0, fault.Invalid("status", `must be empty, "active" or a workspace status`)
	}
	if f.Search != "" {
		// As in ListUsers: the engine folds the columns, foldASCII the
		// pattern, by one rule.
		where = append(where, `(lower(w.name) LIKE ? ESCAPE '\' OR lower(w.description) LIKE ? ESCAPE '\')`)
		pattern := likeContains(foldASCII(f.Search))
		args = append(args, pattern, pattern)
	}
	if len(where) > 0 {
		from += ` WHERE ` + strings.Join(where, ` AND `)
	}
	scan := func(row scanner) (*Workspace, error) {
		w, memberRole, err := scanWorkspace(row)
		if err != nil {
			return nil, err
		}
		w.AccessRole = accessRole(w, memberRole, f.Viewer)
		return w, nil
	}
	stats := func(c conn, list []*Workspace) error { return loadWorkspaceStats(ctx, c, list) }
	list, total, err := readPage(ctx, s, workspaceColumns+`, m.role`, from, args, order, f.Limit, f.Offset, scan, stats)
	if err != nil {
		return nil, 0, fmt.Errorf("list workspaces: %w", err)
	}
	return list, total, nil
}

// UpdateWorkspace changes the fields of upd that are not nil, sets UpdatedAt
// to now and returns the workspace as it now is, with its Stats and no
// AccessRole: access is the caller's to check first. A rename onto the name
// of another workspace of the same owner is a fault.ErrConflict.
func (s *Store) UpdateWorkspace(ctx context.Context, id string, upd WorkspaceUpdate, now time.Time) (*Workspace, error) {
	var (
		sets []string
		args []any
	)
	set := func(column string, value any) {
		sets = append(sets, column+` = ?`)
		args = append(args, value)
	}
	if upd.Name != nil {
		set("name", *upd.Name)
	}
	if upd.Description != nil {
		set("description", *upd.Description)
	}
	if upd.GitURL != nil {
		set("git_url", *upd.GitURL)
	}
	if upd.Branch != nil {
		set("branch", *upd.Branch)
	}
	if upd.Tags != nil {
		tags, err := encodeTags(*upd.Tags)
		if err != nil {
			return nil, fmt.Errorf("update workspace: %w", err)
		}
		set("tags", tags)
	}
	if upd.Metadata != nil {
		meta, err := encodeMetadata(*upd.Metadata)
		if err != nil {
			return nil, fmt.Errorf("update workspace: %w", err)
		}
		set("metadata", meta)
	}
	if upd.Status != nil {
		set("status", string(*upd.Status))
	}
	if upd.StatusReason != nil {
		set("status_reason", *upd.StatusReason)
	}
	if upd.ContainerID != nil {
		set("container_id", *upd.ContainerID)
	}
	if upd.Image != nil {
		set("image", *upd.Image)
	}
	if upd.ImageID != nil {
		set("image_id", *upd.ImageID)
	}
	if upd.DiskUsageMB != nil {
		set("disk_usage_mb", *upd.DiskUsageMB)
	}
	set("updated_at", micros(now))
	args = append(args, id)
	where := `id = ?`
	if len(upd.IfStatus) > 0 {
		where += ` AND status IN (?` + strings.Repeat(`, ?`, len(upd.IfStatus)-1) + `)`
		for _, st := range upd.IfStatus {
			args = append(args, string(st))
		}
	}

	var w *Workspace
	err := s.inTx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE workspaces SET `+strings.Join(sets, `, `)+` WHERE `+where, args...)
		if err != nil {
			return err
		}
		n, err := rowsAffected(res)
		if err != nil {
			return err
		}
		if n == 0 && len(upd.IfStatus) > 0 {
			var status string
			err := c.queryRow(ctx, `SELECT status FROM workspaces WHERE id = ?`, id).Scan(&status)
			if errors.Is(err, sql.ErrNoRows) {
				return fault.NotFound("workspace")
			}
			if err != nil {
				return err
			}
			return fault.New(fault.ErrFailedPrecondition, "the workspace is %s now", strings.ToLower(status))
		}
		if n == 0 {
			return fault.NotFound("workspace")
		}
		if w, err = findWorkspace(ctx, c, id, nil); err != nil {
			return err
		}
		return loadWorkspaceStats(ctx, c, []*Workspace{w})
	})
	switch {
	case err == nil:
		return w, nil
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrFailedPrecondition):
		return nil, err
	case upd.Name != nil && s.d.isUniqueViolation(err):
		return nil, duplicateWorkspace(*upd.Name)
	default:
		return nil, fmt.Errorf("update workspace: %w", err)
	}
}

// DeleteWorkspace deletes a workspace with its members, tasks and their logs.
func (s *Store) DeleteWorkspace(ctx context.Context, id string) error {
	res, err := s.conn().exec(ctx, `DELETE FROM workspaces WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete workspace: %w", err)
	}
	n, err := rowsAffected(res)
	if err != nil {
		return fmt.Errorf("delete workspace: %w", err)
	}
	if n == 0 {
		return fault.NotFound("workspace")
	}
	return nil
}

// accessRole is v's role in w, given v's membership role (NULL when v is not
// a member): the owner is the owner, a member has its role, and an admin who
// is neither sees the workspace as WorkspaceAdmin.
func accessRole(w *Workspace, memberRole sql.NullString, v Viewer) WorkspaceRole {
	switch {
	case v.UserID != "" && w.OwnerID == v.UserID:
		return WorkspaceOwner
	case memberRole.Valid:
		return WorkspaceRole(memberRole.String)
	case v.Admin:
		return WorkspaceAdmin
	default:
		return ""
	}
}

// scanWorkspace reads workspaceColumns followed by the viewer's membership
// role; no row is fault.NotFound("workspace").
func scanWorkspace(row scanner) (*Workspace, sql.NullString, error) {
	var (
		w                Workspace
		status           string
		tags, meta       string
		created, updated int64
		memberRole       sql.NullString
		managed          int64
	)
	err := row.Scan(&w.ID, &w.OwnerID, &w.Name, &w.Description, &w.Path, &status, &w.StatusReason,
		&w.GitURL, &w.Branch, &tags, &meta, &w.Image, &w.ImageID, &w.ContainerID, &managed,
		&w.MemoryMB, &w.CPUs, &w.Pids, &w.DiskUsageMB, &created, &updated, &memberRole)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, memberRole, fault.NotFound("workspace")
	}
	if err != nil {
		return nil, memberRole, err
	}
	w.Status = WorkspaceStatus(status)
	w.Managed = managed != 0
	if w.Tags, err = decodeTags(tags); err != nil {
		return nil, memberRole, fmt.Errorf("workspace %s: %w", w.ID, err)
	}
	if w.Metadata, err = decodeMetadata(meta); err != nil {
		return nil, memberRole, fmt.Errorf("workspace %s: %w", w.ID, err)
	}
	w.CreatedAt = fromMicros(created)
	w.UpdatedAt = fromMicros(updated)
	return &w, memberRole, nil
}
