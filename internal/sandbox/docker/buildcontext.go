package docker

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthhq/berth/internal/hostpath"
)

// walkContext visits everything beneath the open directory root and, when
// tw is not nil, writes it to tw as a build context entry (owned by root,
// as the docker CLI does). It refuses what it cannot send faithfully rather
// than skipping it.
//
// Nothing is opened by a host path: each directory and file is opened from
// root's descriptor with no symbolic link allowed on the way (openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and a file's header is made from
// the file opened, not from an earlier look at its name. So a directory
// swapped for a link to a host directory between the check walk and this
// one fails the build instead of sending the host's files.
func walkContext(root *os.File, tw *tar.Writer) error {
	return walkDir(root, ".", tw)
}

// walkDir sends the entries of the directory rel (relative to root), in
// name order, and recurses into its subdirectories.
func walkDir(root *os.File, rel string, tw *tar.Writer) error {
	dir, err := hostpath.OpenFileBeneath(root, rel)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer dir.Close()
	fi, err := dir.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: is no longer a directory", rel)
	}
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	slices.Sort(names)
	for _, base := range names {
		name := base
		if rel != "." {
			name = rel + "/" + base
		}
		var st unix.Stat_t
		if err := unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := writeHeader(tw, name+"/", tar.TypeDir, &st, 0, ""); err != nil {
				return err
			}
			if err := walkDir(root, name, tw); err != nil {
				return err
			}
		case unix.S_IFLNK:
			link, err := contextLink(root, dir, name, base)
			if err != nil {
				return err
			}
			if err := writeHeader(tw, name, tar.TypeSymlink, &st, 0, link); err != nil {
				return err
			}
		case unix.S_IFREG:
			if tw != nil {
				if err := sendFile(root, name, tw); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%s: cannot send a %s to the engine", name, kind(st.Mode))
		}
	}
	return nil
}

// sendFile writes the regular file name (relative to root) to tw, its
// header made from the file as opened.
func sendFile(root *os.File, name string, tw *tar.Writer) error {
	f, err := hostpath.OpenFileBeneath(root, name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: is no longer a regular file", name)
	}
	if err := writeHeader(tw, name, tar.TypeReg, &st, st.Size, ""); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, st.Size); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// writeHeader writes a tar header for name when tw is not nil.
func writeHeader(tw *tar.Writer, name string, typ byte, st *unix.Stat_t, size int64, link string) error {
	if tw == nil {
		return nil
	}
	hdr := &tar.Header{
		Typeflag: typ,
		Name:     name,
		Linkname: link,
		Size:     size,
		Mode:     int64(st.Mode & 0o7777),
		ModTime:  time.Unix(st.Mtim.Unix()).UTC(),
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// contextLink returns the target to record for the symbolic link base in
// the open directory dir (name, relative to root), or an error when the
// link leads outside root. An absolute target inside root is rewritten
// relative, so that it means the same inside the image.
func contextLink(root, dir *os.File, name, base string) (string, error) {
	target, err := readlinkat(dir, base)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	outside := fmt.Errorf("%s: symbolic link to %q leads outside the build context", name, target)
	parent := path.Dir(name)
	follow := name // what the kernel resolves to check where the link really leads
	if path.IsAbs(target) {
		// An absolute target can only be judged against root's real path.
		real, err := hostpath.Real(root)
		if err != nil {
			return "", err
		}
		in, ok := strings.CutPrefix(path.Clean(target), real)
		if !ok || (in != "" && !strings.HasPrefix(in, "/")) {
			return "", outside
		}
		rel := strings.TrimPrefix(in, "/")
		if rel == "" {
			rel = "."
		}
		// Relative to the link's directory, which is inside root.
		if target, err = relativeTo(parent, rel); err != nil {
			return "", err
		}
		follow = rel
	}
	// The link as written must stay inside…
	if lexical := path.Join(parent, target); lexical == ".." || strings.HasPrefix(lexical, "../") {
		return "", outside
	}
	// …and so must what the system reaches through it, other links
	// included; a link leading nowhere (yet) is sent as it is.
	if err := resolvesBeneath(root, follow); errors.Is(err, hostpath.ErrEscapes) {
		return "", outside
	}
	return target, nil
}

// relativeTo returns the path of target relative to the directory from,
// both clean and relative to the same directory.
func relativeTo(from, target string) (string, error) {
	fromParts := splitPath(from)
	toParts := splitPath(target)
	i := 0
	for i < len(fromParts) && i < len(toParts) && fromParts[i] == toParts[i] {
		i++
	}
	parts := make([]string, 0, len(fromParts)-i+len(toParts)-i)
	for range fromParts[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, toParts[i:]...)
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}

func splitPath(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// resolvesBeneath resolves rel from root, following links, and reports
// hostpath.ErrEscapes when the kernel finds it leads out of root.
func resolvesBeneath(root *os.File, rel string) error {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(int(root.Fd()), rel, &how)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.EXDEV):
			return hostpath.ErrEscapes
		case err != nil:
			return err
		}
		return unix.Close(fd)
	}
}

// readlinkat reads the target of the symbolic link name in dir.
func readlinkat(dir *os.File, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(dir.Fd()), name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// kind names the type of a file that cannot be part of a build context.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFIFO:
		return "named pipe"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}
