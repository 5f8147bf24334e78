// Package sandbox holds the vocabulary shared by berth's container runtimes
// and their users: what a workspace container is made of, what an exec runs,
// and the states and events a runtime reports. The runtimes themselves are
// sandbox/docker (production) and sandbox/process (development without an
// engine); the interfaces they satisfy are declared by their consumers.
package sandbox

import (
	"errors"
	"io"
	"strconv"
	"time"
)

// Labels every runtime puts on what it creates.
const (
	LabelWorkspace = "berth.workspace" // the workspace id
	LabelManaged   = "berth.managed"   // "true"
)

// MountPath is where the project directory appears inside a container.
const MountPath = "/workspace"

// ErrNotFound means the container (or exec) does not exist: it was removed,
// perhaps behind berth's back.
var ErrNotFound = errors.New("sandbox: no such container")

// ErrNotRunning means the container exists but is not running, so nothing
// can be executed in it: start it first.
var ErrNotRunning = errors.New("sandbox: container is not running")

// ErrConflict means a container with the same name already exists — for a
// workspace, usually one left behind by an earlier run; inspect or remove it.
var ErrConflict = errors.New("sandbox: container already exists")

// Limits bound a container. Zero means no limit.
type Limits struct {
	MemoryBytes int64
	NanoCPUs    int64 // 1e9 = one core
	Pids        int64
}

// Spec describes a workspace container.
type Spec struct {
	WorkspaceID string
	Name        string // a readable container name; runtimes may add a suffix
	Image       string
	HostPath    string // the project directory, bind-mounted at MountPath
	User        string // "uid:gid" or a name; empty = the image's default
	Network     string // network mode, e.g. "none" or "bridge"
	Limits      Limits
	CapAdd      []string // every capability is dropped except these
	Env         []string // KEY=value
}

// State is a container's life-cycle state as the runtime sees it.
type State string

// The container states.
const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateStopped State = "stopped" // exited, or created and never started
	StateMissing State = "missing" // the runtime has no such container
)

// Info is what inspecting a container tells.
type Info struct {
	ID          string
	WorkspaceID string
	// ImageID is the id of the image the container was created from;
	// empty on a runtime without images (process).
	ImageID   string
	State     State
	ExitCode  int
	Error     string // the runtime's reason, when it has one
	StartedAt time.Time
}

// Event is a change of a container's state.
type Event struct {
	ContainerID string
	WorkspaceID string
	State       State
	Time        time.Time
}

// ExecSpec is a command to run inside a container.
type ExecSpec struct {
	Argv   []string // never a shell string
	Dir    string   // working directory; default MountPath
	Env    []string // KEY=value, added to the container's
	User   string   // default: the container's user
	Stdin  io.Reader
	Stdout io.Writer // receives stdout as it comes
	Stderr io.Writer // receives stderr as it comes, kept apart from stdout
	// Tag, when set, marks every process of the exec (TagVar=<tag> in its
	// environment) so that StopTagged can stop them later — from any berth
	// instance, such as one that takes over a task whose instance died.
	Tag string
}

// TagVar is the environment variable that carries an exec's Tag.
const TagVar = "BERTH_TAG"

// ExitError is returned by an exec whose command exited non-zero.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return "exit status " + strconv.Itoa(e.Code) }
