package docker

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/berthhq/berth/internal/sandbox"
)

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
