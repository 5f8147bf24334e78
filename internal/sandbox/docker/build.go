package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/build"

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
		_ = pr.CloseWithError(err) // a pipe reader's Close never fails
		if terr := <-tarred; terr != nil && !errors.Is(terr, err) {
			return "", fmt.Errorf("docker build: %w", terr)
		}
		return "", fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	id, err := readBuildOutput(resp.Body, orDiscard(spec.Out))
	_ = pr.Close() // the engine has answered; the context writer may stop
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
