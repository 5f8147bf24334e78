package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/build"
)

// Build builds an image from the directory contextDir with the Dockerfile at
// the context-relative path dockerfile (default "Dockerfile"), tags it tag
// when tag is not empty, and returns the image id ("sha256:…"). The build's
// output is written to out line by line as the engine produces it. A failed
// step is an error carrying the engine's message.
//
// The whole directory is sent — nothing is skipped, and .dockerignore is not
// applied. Files that cannot be sent faithfully are refused before anything
// is sent: symbolic links that lead outside the directory, devices, sockets
// and pipes. The classic builder is used (BuildKit needs a session the Engine
// API alone does not provide).
func (r *Runtime) Build(ctx context.Context, contextDir, dockerfile, tag string, out io.Writer) (string, error) {
	root, err := filepath.Abs(contextDir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return "", fmt.Errorf("docker build: context %q: %w", contextDir, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("docker build: context %q is not a directory", contextDir)
	}
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	df := path.Clean(filepath.ToSlash(dockerfile))
	if path.IsAbs(df) || df == ".." || strings.HasPrefix(df, "../") {
		return "", fmt.Errorf("docker build: Dockerfile %q is not inside the context", dockerfile)
	}
	// Check everything first, so that a refused file stops the build
	// before the engine sees a partial context.
	if err := walkContext(root, nil); err != nil {
		return "", fmt.Errorf("docker build: %w", err)
	}

	pr, pw := io.Pipe()
	tarred := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := walkContext(root, tw)
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
	}
	if tag != "" {
		opts.Tags = []string{tag}
	}
	resp, err := r.cli.ImageBuild(ctx, pr, opts)
	if err != nil {
		pr.CloseWithError(err)
		if terr := <-tarred; terr != nil {
			return "", fmt.Errorf("docker build: %w", terr)
		}
		return "", fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	id, err := readBuildOutput(resp.Body, orDiscard(out))
	pr.Close() // the engine has answered; the context writer may stop
	if terr := <-tarred; terr != nil && !errors.Is(terr, io.ErrClosedPipe) {
		return "", fmt.Errorf("docker build: %w", terr)
	}
	if err != nil {
		return "", err
	}
	if id == "" && tag != "" {
		img, ierr := r.cli.ImageInspect(ctx, tag)
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

// walkContext visits every file under root and, when tw is not nil, writes
// it to tw as a build context entry (owned by root, as the docker CLI does).
// It refuses what it cannot send faithfully rather than skipping it.
func walkContext(root string, tw *tar.Writer) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch mode := fi.Mode(); {
		case mode.IsRegular(), mode.IsDir():
		case mode&fs.ModeSymlink != 0:
			if link, err = contextLink(root, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: cannot send a %v to the engine", name, mode.Type())
		}
		if tw == nil {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// contextLink returns the target to record for the symbolic link at p, or
// an error when the link leads outside root. An absolute target inside root
// is rewritten relative, so that it means the same inside the image.
func contextLink(root, p string) (string, error) {
	target, err := os.Readlink(p)
	if err != nil {
		return "", err
	}
	resolved := target
	if !filepath.IsAbs(target) {
		resolved = filepath.Join(filepath.Dir(p), target)
	}
	resolved = filepath.Clean(resolved)
	// Both the link read as written and, when it leads somewhere, the path
	// the system actually reaches through it (other links included).
	physical, perr := filepath.EvalSymlinks(p)
	if !inside(root, resolved) || (perr == nil && !inside(root, physical)) {
		name, _ := filepath.Rel(root, p)
		return "", fmt.Errorf("%s: symbolic link to %q leads outside the build context", filepath.ToSlash(name), target)
	}
	if filepath.IsAbs(target) {
		if target, err = filepath.Rel(filepath.Dir(p), resolved); err != nil {
			return "", err
		}
	}
	return filepath.ToSlash(target), nil
}

// inside reports whether p is root or below it; both are clean and absolute.
func inside(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
