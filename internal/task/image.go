package task

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/berthhq/berth/internal/fault"
	"github.com/berthhq/berth/internal/hostpath"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
)

// BuildDefaults are the container settings a docker_build's RUN steps get
// when the workspace sets none of its own: the same as its workspace
// container's, so a build can do no more on the host than the workspace
// itself can.
type BuildDefaults struct {
	Network  string  // network mode, such as "none" or "bridge"
	MemoryMB int64   // 0 = no limit
	CPUs     float64 // 0 = no limit
}

// limits are the RUN-step limits of a build in workspace w.
func (d BuildDefaults) limits(w *store.Workspace) sandbox.Limits {
	mem, cpus := w.MemoryMB, w.CPUs
	if mem == 0 {
		mem = d.MemoryMB
	}
	if cpus == 0 {
		cpus = d.CPUs
	}
	return sandbox.Limits{MemoryBytes: mem << 20, NanoCPUs: int64(cpus * 1e9)}
}

// buildTag returns the full image tag a docker_build task of workspace
// workspaceID writes when it asks for requested. A build writes only its
// own workspace's repository, berth-build/<workspace id>: requested may be
// empty (the tag is then the first 8 characters of the task's id, so every
// build keeps its own image), a bare tag such as "v1", or the full
// "berth-build/<workspace id>:<tag>". Anything else — another repository,
// another workspace's, the server's workspace image, a digest — is refused:
// a build that could tag any name could replace an image other workspaces
// run, and every later workspace would run the builder's code with its
// owner's files and keys.
func buildTag(workspaceID, taskID, requested string) (string, error) {
	repo := sandbox.BuildRepository(workspaceID)
	switch {
	case requested == "":
		return repo + ":" + taskID[:min(8, len(taskID))], nil
	case sandbox.ValidTag(requested):
		return repo + ":" + requested, nil
	case sandbox.IsBuildOf(requested, workspaceID):
		return requested, nil
	}
	return "", fault.Invalid("docker_build.tag", fmt.Sprintf(
		"a build may only tag its own workspace's images: leave it empty, give a tag such as %q (built as %s:v1) or the full %s:<tag>; "+
			"a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", "v1", repo, repo))
}

// checkDockerfile refuses a Dockerfile path that is not a clean relative
// path inside the build context, before it is stored rather than when the
// build fails.
func checkDockerfile(p string) error {
	if p == "" || sandbox.ContextPath(p) {
		return nil
	}
	return fault.Invalid("docker_build.dockerfile", `must be a clean path relative to the build context, without ".." elements, such as "Dockerfile" or "docker/app.Dockerfile"`)
}

// openContext opens the build context rel inside the workspace directory
// root: the workspace directory with no symbolic link on its path, then rel
// beneath it (a link inside is followed only while it stays inside). The
// build reads the directory opened, so a directory swapped for a link
// afterwards cannot take it elsewhere. The caller closes the result.
func openContext(root, rel string) (*os.File, error) {
	if _, err := workingDir(rel); err != nil {
		return nil, fmt.Errorf("the build context %q is not a relative path inside the workspace", rel)
	}
	dir, err := hostpath.OpenIn(root, strings.TrimSuffix(rel, "/"))
	switch {
	case err == nil:
		return dir, nil
	case errors.Is(err, hostpath.ErrRoot):
		return nil, fmt.Errorf("the workspace directory cannot be opened: %w", err)
	case errors.Is(err, hostpath.ErrEscapes):
		return nil, fmt.Errorf("the build context %q leaves the workspace", rel)
	case errors.Is(err, hostpath.ErrNotExist):
		return nil, fmt.Errorf("the build context %q does not exist in the workspace", rel)
	case errors.Is(err, hostpath.ErrNotDir):
		return nil, fmt.Errorf("the build context %q is not a directory", rel)
	}
	return nil, fmt.Errorf("the build context %q cannot be opened: %w", rel, err)
}
