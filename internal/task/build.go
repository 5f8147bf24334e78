package task

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/sandbox"
)

// buildExecutor runs docker_build tasks: it builds an image from a
// directory of the workspace, under the workspace's network mode and
// limits, into the workspace's own build repository. The tag is checked
// again here, not only when the task was created: a task stored before the
// rule existed must not slip through.
type buildExecutor struct{ r *Runner }

func (e buildExecutor) run(ctx context.Context, j job) outcome {
	r, t, w, logs := e.r, j.task, j.ws, j.logs
	b := t.DockerBuild
	if b == nil {
		return outcome{err: &Failure{Code: "INVALID", Message: "the task has no build"}}
	}
	tag, err := buildTag(w.ID, t.ID, b.Tag)
	if err != nil {
		msg := err.Error()
		if m, ok := fault.Message(err); ok {
			msg = m
		}
		return outcome{err: &Failure{Code: "TAG_REFUSED", Message: msg}}
	}
	if err := checkDockerfile(b.Dockerfile); err != nil {
		return outcome{err: &Failure{Code: "INVALID", Message: err.Error()}}
	}
	dir, err := openContext(w.Path, b.ContextDir)
	if err != nil {
		return outcome{err: &Failure{Code: "INVALID", Message: err.Error()}}
	}
	defer dir.Close()
	out := logs.Stdout()
	id, err := r.rt.Build(ctx, sandbox.BuildSpec{
		Context:    dir,
		Dockerfile: b.Dockerfile,
		Tag:        tag,
		Network:    r.cfg.Builds.Network,
		Limits:     r.cfg.Builds.limits(w),
		Out:        &buildProgress{w: out, set: func(p *Progress) { r.setProgress(ctx, t, p) }},
	})
	closeAll(out)
	if ctx.Err() != nil {
		return outcome{}
	}
	if err != nil {
		return outcome{err: &Failure{Code: "BUILD_FAILED", Message: err.Error()}}
	}
	return outcome{result: &Result{Success: true, Summary: "built " + tag, Details: map[string]any{"image_id": id, "tag": tag}}}
}

// maxBuildSteps bounds the "Step N/M" a build may report as progress; a
// Dockerfile has far fewer instructions.
const maxBuildSteps = 100000

// buildProgress passes build output through and reports "Step N/M" lines
// as progress.
type buildProgress struct {
	w       io.Writer
	set     func(*Progress)
	partial []byte
}

func (b *buildProgress) Write(p []byte) (int, error) {
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		line := string(b.partial[:i])
		b.partial = b.partial[i+1:]
		// The numbers come from the build's output, which the workspace's
		// Dockerfile controls: only a believable step count is progress.
		var cur, total int
		if _, err := fmt.Sscanf(line, "Step %d/%d", &cur, &total); err == nil && total > 0 && total <= maxBuildSteps && cur >= 0 && cur <= total {
			b.set(&Progress{Current: cur, Total: total, Percentage: cur * 100 / total, Message: line})
		}
	}
	return b.w.Write(p)
}
