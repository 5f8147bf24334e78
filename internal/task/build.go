package task

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/tasklog"
)

// runBuild builds an image from a directory of the workspace, under the
// workspace's network mode and limits, into the workspace's own build
// repository. The tag is checked again here, not only when the task was
// created: a task stored before the rule existed must not slip through.
func (r *Runner) runBuild(ctx context.Context, t *store.TaskRecord, w *store.Workspace, logs *tasklog.Writer) outcome {
	b := decode[berthv1.DockerBuild](t.DockerBuild)
	tag, err := buildTag(w.ID, t.ID, b.GetTag())
	if err != nil {
		msg := err.Error()
		if m, ok := fault.Message(err); ok {
			msg = m
		}
		return outcome{err: &berthv1.TaskError{Code: "TAG_REFUSED", Message: msg}}
	}
	if err := checkDockerfile(b.GetDockerfile()); err != nil {
		return outcome{err: &berthv1.TaskError{Code: "INVALID", Message: err.Error()}}
	}
	dir, err := openContext(w.Path, b.GetContextDir())
	if err != nil {
		return outcome{err: &berthv1.TaskError{Code: "INVALID", Message: err.Error()}}
	}
	defer dir.Close()
	out := logs.Stdout()
	id, err := r.rt.Build(ctx, sandbox.BuildSpec{
		Context:    dir,
		Dockerfile: b.GetDockerfile(),
		Tag:        tag,
		Network:    r.cfg.Builds.Network,
		Limits:     r.cfg.Builds.limits(w),
		Out: &buildProgress{w: out, set: func(p *berthv1.TaskProgress) {
			raw := encode(p)
			if err := r.store.SetTaskProgress(context.WithoutCancel(ctx), t.ID, raw, nil, nil); err == nil {
				t.Progress = raw
				r.published(t)
			}
		}},
	})
	closeAll(out)
	if ctx.Err() != nil {
		return outcome{}
	}
	if err != nil {
		return outcome{err: &berthv1.TaskError{Code: "BUILD_FAILED", Message: err.Error()}}
	}
	details, _ := structpb.NewStruct(map[string]any{"image_id": id, "tag": tag})
	return outcome{result: &berthv1.TaskResult{Success: true, Summary: "built " + tag, Details: details}}
}

// maxBuildSteps bounds the "Step N/M" a build may report as progress; a
// Dockerfile has far fewer instructions.
const maxBuildSteps = 100000

// buildProgress passes build output through and reports "Step N/M" lines
// as progress.
type buildProgress struct {
	w       io.Writer
	set     func(*berthv1.TaskProgress)
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
			b.set(&berthv1.TaskProgress{Current: int32(cur), Total: int32(total), Percentage: int32(cur * 100 / total), Message: line}) // #nosec G115 -- bounded just above
		}
	}
	return b.w.Write(p)
}
