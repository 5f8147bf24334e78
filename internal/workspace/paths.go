package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berthhq/berth/internal/fault"
)

// Roots are the host directories workspaces may live in, resolved (absolute,
// cleaned, symlinks followed) once at start-up.
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

// Resolve applies the path rules to a requested project directory and
// returns the path to store: it must be absolute, free of ".." elements, an
// existing directory once symlinks are resolved, and strictly inside one of
// the roots (a root itself is not a workspace). Every refusal is an
// ErrInvalid fault on field "path" saying which rule failed.
func (r Roots) Resolve(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fault.Invalid("path", fmt.Sprintf("%q is not an absolute path", path))
	}
	if slices.Contains(strings.Split(filepath.ToSlash(path), "/"), "..") {
		return "", fault.Invalid("path", fmt.Sprintf("%q must not contain \"..\" elements", path))
	}
	resolved, err := filepath.EvalSymlinks(filepath.Clean(path))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fault.Invalid("path", fmt.Sprintf("%q does not exist", path))
	}
	if err != nil {
		return "", fault.Invalid("path", fmt.Sprintf("%q cannot be resolved", path))
	}
	info, err := os.Stat(resolved)
	if err != nil {
		return "", fault.Invalid("path", fmt.Sprintf("%q cannot be read", path))
	}
	if !info.IsDir() {
		return "", fault.Invalid("path", fmt.Sprintf("%q is not a directory", path))
	}
	for _, root := range r {
		rel, err := filepath.Rel(root, resolved)
		if err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return resolved, nil
		}
	}
	return "", fault.Invalid("path", fmt.Sprintf("%q (resolved to %q) is not inside a workspace root (%s)", path, resolved, strings.Join(r, ", ")))
}
