package sandbox

import (
	"errors"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
)

// ErrImageNotFound means the engine has no image by the reference asked
// for: it must be built (or pulled by an operator) first. Retrying does not
// help, so it is a permanent failure, not an unavailable engine.
var ErrImageNotFound = errors.New("sandbox: no such image")

// BuildRepositoryPrefix starts every repository berth's builds may write.
// Each workspace builds into its own repository under it (see
// BuildRepository), so that no build can overwrite an image something else
// runs — the server's default workspace image least of all.
const BuildRepositoryPrefix = "berth-build/"

// BuildRepository is the only repository the builds of workspace
// workspaceID may tag images in.
func BuildRepository(workspaceID string) string { return BuildRepositoryPrefix + workspaceID }

// tagGrammar is Docker's grammar for the tag part of an image reference.
var tagGrammar = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ValidTag reports whether tag is a tag by Docker's grammar, such as "v1"
// or "latest" (not a repository, not a digest).
func ValidTag(tag string) bool { return tagGrammar.MatchString(tag) }

// IsBuildOf reports whether ref is a tag in workspace workspaceID's own
// build repository: "berth-build/<workspaceID>:<tag>".
func IsBuildOf(ref, workspaceID string) bool {
	if workspaceID == "" {
		return false
	}
	tag, ok := strings.CutPrefix(ref, BuildRepository(workspaceID)+":")
	return ok && ValidTag(tag)
}

// BuildSpec describes an image build.
type BuildSpec struct {
	// Context is the open build-context directory. The runtime reads only
	// beneath it, never following a symbolic link on the way to what it
	// sends, and does not close it.
	Context *os.File
	// Dockerfile is the Dockerfile's path relative to Context; empty means
	// "Dockerfile".
	Dockerfile string
	// Tag names the image built; empty leaves it untagged.
	Tag string
	// Network is the network mode of the build's RUN steps ("none",
	// "bridge", …); empty is the engine's default.
	Network string
	// Limits bound each RUN step's container (memory and CPU; the classic
	// builder has no process limit).
	Limits Limits
	// Out receives the build's output as the engine produces it; nil
	// discards it.
	Out io.Writer
}

// ContextPath reports whether p is a path a build may name inside its
// context, such as its Dockerfile: relative, clean, without ".." elements,
// and at most 4096 bytes (PATH_MAX).
func ContextPath(p string) bool {
	return p != "" && len(p) <= 4096 && !path.IsAbs(p) && path.Clean(p) == p &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.ContainsRune(p, 0)
}
