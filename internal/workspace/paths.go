package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/hostpath"
)

// Roots are the host directories workspaces may live in, resolved (absolute,
// cleaned, symlinks followed) once at start-up. berth creates the
// directories of the workspaces it manages inside the first root, as
// <root>/<owner id>/<workspace id>; an admin may import an existing
// directory inside any root.
type Roots []string

// NewRoots resolves each root and creates it if missing (mode 0750).
func NewRoots(dirs []string) (Roots, error) {
	if len(dirs) == 0 {
		return nil, errors.New("workspace: at least one workspace root is required")
	}
	roots := make(Roots, 0, len(dirs))
	for _, dir := range dirs {
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("workspace: root %q is not an absolute path", dir)
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("workspace: create root %s: %w", dir, err)
		}
		resolved, err := filepath.EvalSymlinks(filepath.Clean(dir))
		if err != nil {
			return nil, fmt.Errorf("workspace: resolve root %s: %w", dir, err)
		}
		roots = append(roots, resolved)
	}
	return roots, nil
}

// notAllowed is every refusal of a requested path that a caller sees: it
// says which rule a person can fix (absolute, no "..") or only that the
// path is not allowed, never what exists on the host, what kind of file it
// is or where a link points. The server log has the detail.
func notAllowed(path string, cause error) error {
	reason := fmt.Sprintf("%q is not an allowed workspace directory: it must be an existing directory inside a workspace root", path)
	return &fault.Error{Kind: fault.ErrInvalid, Message: "path: " + reason, Violations: []fault.Violation{{Field: "path", Reason: reason}}, Cause: cause}
}

// Resolve applies the path rules to a directory an admin imports and
// returns the path to store: it must be absolute, free of ".." elements, an
// existing directory once symlinks are resolved, and strictly inside one of
// the roots (a root itself is not a workspace). Every refusal is an
// ErrInvalid fault on field "path" that tells nothing about the host (see
// notAllowed); the cause, for the log, is wrapped in it.
func (r Roots) Resolve(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fault.Invalid("path", fmt.Sprintf("%q is not an absolute path", path))
	}
	if slices.Contains(strings.Split(filepath.ToSlash(path), "/"), "..") {
		return "", fault.Invalid("path", fmt.Sprintf("%q must not contain \"..\" elements", path))
	}
	refuse := func(cause error) (string, error) { return "", notAllowed(path, cause) }
	resolved, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		return refuse(err)
	}
	info, err := os.Stat(resolved)
	if err != nil {
		return refuse(err)
	}
	if !info.IsDir() {
		return refuse(fmt.Errorf("%s is not a directory", resolved))
	}
	if !r.holds(resolved) {
		return refuse(fmt.Errorf("%s is not inside a workspace root", resolved))
	}
	return resolved, nil
}

// holds reports whether path lies strictly inside one of the roots.
func (r Roots) holds(path string) bool {
	for _, root := range r {
		if path != root && hostpath.Within(root, path) {
			return true
		}
	}
	return false
}

// Owner is the host account that workspace directories berth creates are
// given to, so that the container user (--workspace-user) can write them.
type Owner struct {
	UID, GID int // -1: leave as berth made it
}

// ParseOwner reads the numeric "uid[:gid]" of a container user. A user
// named by name cannot be resolved on the host (the name lives in the
// image), so it gives an Owner that changes nothing, and ok false.
func ParseOwner(user string) (o Owner, ok bool) {
	o = Owner{UID: -1, GID: -1}
	if user == "" {
		return o, false
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid < 0 {
		return o, false
	}
	gid := -1
	if hasGroup {
		if gid, err = strconv.Atoi(g); err != nil || gid < 0 {
			return o, false
		}
	}
	return Owner{UID: uid, GID: gid}, true
}

// Make creates the directory of a workspace berth manages,
// <first root>/<owner id>/<workspace id>, and gives it to o. The owner's
// directory is berth's own (0700): nothing in a container can reach it, so
// no workspace can ever replace another's directory with a symbolic link.
// The workspace directory must not exist yet. When berth may not give it
// away (it does not run as root), it is left to berth's user if that is
// o's user too, and otherwise opened to all (0777) inside the 0700 parent,
// so the container user can still write it; the caller logs that.
func (r Roots) Make(ownerID, workspaceID string, o Owner) (dir string, shared bool, err error) {
	if !safeName(ownerID) || !safeName(workspaceID) {
		return "", false, fmt.Errorf("workspace: unusable directory names %q/%q", ownerID, workspaceID)
	}
	parent := filepath.Join(r[0], ownerID)
	if err := os.Mkdir(parent, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", false, fmt.Errorf("workspace: create %s: %w", parent, err)
	}
	dir = filepath.Join(parent, workspaceID)
	if err := os.Mkdir(dir, 0o750); err != nil {
		return "", false, fmt.Errorf("workspace: create %s: %w", dir, err)
	}
	// The path was just made from resolved parts; check it holds no link
	// (the owner's directory was there already, and is berth's alone).
	f, err := hostpath.OpenDir(dir)
	if err != nil {
		_ = os.Remove(dir)
		return "", false, fmt.Errorf("workspace: open %s: %w", dir, err)
	}
	defer f.Close()
	if o.UID < 0 || (o.UID == os.Geteuid() && (o.GID < 0 || o.GID == os.Getegid())) {
		return dir, false, nil
	}
	if err := f.Chown(o.UID, o.GID); err == nil {
		return dir, false, nil
	} else if !errors.Is(err, fs.ErrPermission) {
		_ = os.Remove(dir)
		return "", false, fmt.Errorf("workspace: give %s to %d:%d: %w", dir, o.UID, o.GID, err)
	}
	if err := f.Chmod(0o777); err != nil {
		_ = os.Remove(dir)
		return "", false, fmt.Errorf("workspace: open up %s: %w", dir, err)
	}
	return dir, true, nil
}

// safeName reports whether s is usable as one path element: ids are UUIDs.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// Remove deletes a managed workspace's directory and everything in it,
// after checking it is still the real directory berth made: os.RemoveAll
// never follows a symbolic link inside it.
func (r Roots) Remove(dir string) error {
	f, err := hostpath.OpenDir(dir)
	if errors.Is(err, hostpath.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_ = f.Close() // read-only, opened only to check the path
	if !r.holds(dir) {
		return fmt.Errorf("workspace: %s is not inside a workspace root", dir)
	}
	return os.RemoveAll(dir)
}

// Check is the re-check made at every use of a stored workspace path: the
// directory must still be there, reached with no symbolic link on the way
// (so it is the very directory that was stored, not a link someone put in
// its place), and strictly inside a root.
func (r Roots) Check(path string) error {
	f, err := hostpath.OpenDir(path)
	if err != nil {
		return err
	}
	defer f.Close()
	real, err := hostpath.Real(f)
	if err != nil {
		return err
	}
	if real != path {
		return fmt.Errorf("workspace: %s now resolves to %s", path, real)
	}
	if !r.holds(real) {
		return fmt.Errorf("workspace: %s is not inside a workspace root", real)
	}
	return nil
}
