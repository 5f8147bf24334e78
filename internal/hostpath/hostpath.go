// Package hostpath opens host directories that a hostile user may be
// rearranging while berth uses them. A workspace's agent can replace any
// directory it can write with a symbolic link at any moment, so a path that
// was checked once proves nothing the next time it is used: every use opens
// the directory again, with the kernel refusing (openat2) what a check and a
// later open could not tell apart — a symlink anywhere on the way to a
// workspace directory, and a path inside one that leads out of it.
//
// The opened *os.File, not its name, is then what berth uses: FDPath names
// that very directory for a child process to chdir into, so nothing can be
// swapped between the check and the use.
package hostpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrSymlink means a path that must be free of symbolic links has one.
var ErrSymlink = errors.New("hostpath: the path contains a symbolic link")

// ErrEscapes means a path inside a directory leads out of it (through "..",
// an absolute path or a symbolic link).
var ErrEscapes = errors.New("hostpath: the path leads outside its directory")

// ErrNotDir means the path names something other than a directory.
var ErrNotDir = errors.New("hostpath: not a directory")

// ErrNotExist means nothing is at the path.
var ErrNotExist = errors.New("hostpath: no such directory")

// OpenDir opens the directory at the absolute, cleaned path, refusing a path
// with a symbolic link in any of its components (ErrSymlink). A stored
// workspace path was resolved when it was stored, so a symlink on it now
// means someone replaced a directory since.
func OpenDir(path string) (*os.File, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return nil, fmt.Errorf("hostpath: %q is not an absolute, clean path", path)
	}
	return openat2(unix.AT_FDCWD, path, path, unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
}

// OpenBeneath opens the directory rel inside dir. Symbolic links are
// followed only while they stay inside dir; "..", absolute paths and links
// that leave dir are ErrEscapes. An empty rel or "." opens dir again.
func OpenBeneath(dir *os.File, rel string) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	if filepath.IsAbs(rel) {
		return nil, fmt.Errorf("%w: %q is absolute", ErrEscapes, rel)
	}
	return openat2(int(dir.Fd()), rel, rel, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_MAGICLINKS)
}

// ErrRoot marks an OpenIn error about the outer directory itself (a link
// on its path, or gone), as opposed to the path inside it.
var ErrRoot = errors.New("hostpath: the directory itself cannot be opened")

// OpenIn opens the directory rel inside the directory at the absolute,
// clean path root: root with no symbolic link on the way (OpenDir), then
// rel beneath it (OpenBeneath). It is the one way berth opens a directory
// of a workspace — a working directory, a build context — at the moment it
// uses it. An error about root itself also matches ErrRoot.
func OpenIn(root, rel string) (*os.File, error) {
	dir, err := OpenDir(root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	defer dir.Close()
	return OpenBeneath(dir, rel)
}

// OpenFileBeneath opens the regular file (or whatever is there, for reading)
// rel inside dir with no symbolic link anywhere on the way (ErrSymlink) and
// without leaving dir (ErrEscapes); a link at rel itself is not followed
// either. It is for copying a tree out of a directory its owner may be
// changing at the same time. The open never blocks (O_NONBLOCK): a named
// pipe swapped in for a file is opened at once, for the caller to refuse
// by its type, instead of waiting forever for a writer.
func OpenFileBeneath(dir *os.File, rel string) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(dir.Fd()), rel, &how)
	if err != nil {
		return nil, openError(rel, err)
	}
	return os.NewFile(uintptr(fd), rel), nil
}

func openat2(dirfd int, path, name string, resolve uint64) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolve,
	}
	for {
		fd, err := unix.Openat2(dirfd, path, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // EAGAIN: a rename raced the lookup; try again
		}
		if err != nil {
			return nil, openError(name, err)
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}

func openError(name string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %q", ErrSymlink, name)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %q", ErrEscapes, name)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %q", ErrNotDir, name)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %q", ErrNotExist, name)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("hostpath: this kernel has no openat2 (Linux 5.6 or later is needed): %w", err)
	}
	return fmt.Errorf("hostpath: open %q: %w", name, err)
}

// Real returns the real path of the open directory f, as the kernel knows
// it now.
func Real(f *os.File) (string, error) {
	p, err := os.Readlink(FDPath(f))
	if err != nil {
		return "", fmt.Errorf("hostpath: real path of %s: %w", f.Name(), err)
	}
	return p, nil
}

// FDPath names the open file f through /proc/self/fd. A child process
// started while f is open (its descriptor is copied at fork) that changes
// into FDPath(f) before it executes lands in exactly f, whatever has
// happened to f's name since it was opened.
func FDPath(f *os.File) string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
}

// Within reports whether path is dir or lies inside it; both must be clean
// absolute paths.
func Within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !filepathHasDotDot(rel)
}

func filepathHasDotDot(rel string) bool {
	return len(rel) >= 3 && rel[:3] == ".."+string(filepath.Separator)
}
