package task

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/berthhq/berth/internal/hostpath"
	"github.com/berthhq/berth/internal/sandbox"
)

// checkWorkDir re-checks, when a task starts, that its working directory
// (config.working_dir, relative to the workspace) is still a directory inside
// the workspace directory on the host, resolving every symbolic link in it
// without leaving the workspace (hostpath.OpenBeneath). It was only a
// well-formed relative path when the task was created; since then anything
// running in the workspace may have turned it into a link to / — which, in
// a container, would be the container's own / (the process runtime checks
// again at each exec, where it would be the host's).
func checkWorkDir(workspaceDir, workingDirConfig string) error {
	dir, err := workingDir(workingDirConfig)
	if err != nil {
		return err
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(path.Clean(dir), sandbox.MountPath), "/")
	wd, err := hostpath.OpenIn(workspaceDir, rel)
	if errors.Is(err, hostpath.ErrRoot) {
		return fmt.Errorf("the workspace directory is not usable: %w", err)
	}
	if err != nil {
		return fmt.Errorf("the working directory %q is not a directory inside the workspace: %w", rel, err)
	}
	return wd.Close()
}
