package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"golang.org/x/sys/unix"

	"github.com/berthhq/berth/internal/hostpath"
	"github.com/berthhq/berth/internal/sandbox"
)

// cpuPeriod is the CFS period a build's CPU quota is a share of (the
// engine's own default, 100ms).
const cpuPeriod = 100_000

// Build builds an image from the directory spec.Context with the Dockerfile
// at the context-relative path spec.Dockerfile (default "Dockerfile"), tags
// it spec.Tag when that is not empty, and returns the image id
// ("sha256:…"). The build's output is written to spec.Out line by line as
// the engine produces it. A failed step is an error carrying the engine's
// message.
//
// Every RUN step runs in spec.Network with spec.Limits' memory (swap
// included) and CPU, as a workspace container does. The build lasts as long
// as ctx: when ctx ends the request is cut, and the engine cancels the build
// and (ForceRemove) removes the step's container, so a task's time limit or
// cancel really stops the build on the engine.
//
// The whole directory is sent — nothing is skipped, and .dockerignore is not
// applied. Every file and directory is opened beneath spec.Context with no
// symbolic link anywhere on its way (openat2), so a directory its owner
// swaps for a link while the context is read fails the build instead of
// sending what the link leads to; links themselves are sent as links, and
// only when they stay inside the context. Files that cannot be sent
// faithfully are refused before anything is sent: links leading outside,
// devices, sockets and pipes. The classic builder is used (BuildKit needs a
// session the Engine API alone does not provide).
func (r *Runtime) Build(ctx context.Context, spec sandbox.BuildSpec) (string, error) {
	if spec.Context == nil {
		return "", errors.New("docker build: no context directory")
	}
	df := spec.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !sandbox.ContextPath(df) {
		return "", fmt.Errorf("docker build: Dockerfile %q is not a clean relative path inside the context", spec.Dockerfile)
	}
	// Check everything first, so that a refused file stops the build
	// before the engine sees a partial context.
	if err := walkContext(spec.Context, nil); err != nil {
		return "", fmt.Errorf("docker build: %w", err)
	}

	pr, pw := io.Pipe()
	tarred := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := walkContext(spec.Context, tw)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
		tarred <- err
	}()
	opts := build.ImageBuildOptions{
		Dockerfile:  df,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		NetworkMode: spec.Network,
		Memory:      spec.Limits.MemoryBytes,
	}
	if spec.Limits.MemoryBytes > 0 {
		opts.MemorySwap = spec.Limits.MemoryBytes // no swap beyond the limit, as for containers
	}
	if spec.Limits.NanoCPUs > 0 {
		opts.CPUPeriod = cpuPeriod
		opts.CPUQuota = max(spec.Limits.NanoCPUs*cpuPeriod/1e9, 1000) // the engine's minimum quota is 1ms
	}
	if spec.Tag != "" {
		opts.Tags = []string{spec.Tag}
	}
	resp, err := r.cli.ImageBuild(ctx, pr, opts)
	if err != nil {
		pr.CloseWithError(err)
		if terr := <-tarred; terr != nil && !errors.Is(terr, err) {
			return "", fmt.Errorf("docker build: %w", terr)
		}
		return "", fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	id, err := readBuildOutput(resp.Body, orDiscard(spec.Out))
	pr.Close() // the engine has answered; the context writer may stop
	if terr := <-tarred; terr != nil && !errors.Is(terr, io.ErrClosedPipe) {
		return "", fmt.Errorf("docker build: %w", terr)
	}
	if err != nil {
		return "", err
	}
	if id == "" && spec.Tag != "" {
		img, ierr := r.cli.ImageInspect(ctx, spec.Tag)
		if ierr != nil {
			return "", fmt.Errorf("docker build: finding the image built: %w", ierr)
		}
		id = img.ID
	}
	if id == "" {
		return "", errors.New("docker build: the engine did not report the image id")
	}
	return id, nil
}

// ImageID resolves the image reference ref (a name, name:tag or id) to the
// id of the image it names on the engine now. An image the engine does not
// have is sandbox.ErrImageNotFound.
func (r *Runtime) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := r.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return img.ID, nil
	case cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("docker image %q: %w: build it or pull it on the engine first", ref, sandbox.ErrImageNotFound)
	default:
		return "", fmt.Errorf("docker image %q: %w", ref, err)
	}
}

// buildMessage is one JSON message of the engine's build output.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	ID          string `json:"id"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

// readBuildOutput copies the build's text to out as it comes and returns the
// image id from the final aux message.
func readBuildOutput(body io.Reader, out io.Writer) (string, error) {
	dec := json.NewDecoder(body)
	var id string
	for {
		var m buildMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return id, nil
		} else if err != nil {
			return "", fmt.Errorf("docker build: reading the engine's output: %w", err)
		}
		switch {
		case m.ErrorDetail != nil && m.ErrorDetail.Message != "":
			return "", fmt.Errorf("docker build: %s", strings.TrimSpace(m.ErrorDetail.Message))
		case m.Error != "":
			return "", fmt.Errorf("docker build: %s", strings.TrimSpace(m.Error))
		case m.Stream != "":
			if _, err := io.WriteString(out, m.Stream); err != nil {
				return "", fmt.Errorf("docker build: writing output: %w", err)
			}
		case m.Status != "":
			line := m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			if _, err := io.WriteString(out, line+"\n"); err != nil {
				return "", fmt.Errorf("docker build: writing output: %w", err)
			}
		case len(m.Aux) > 0:
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
	}
}

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
