package config

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The container runtimes.
const (
	RuntimeAuto    = "auto"
	RuntimeDocker  = "docker"
	RuntimeProcess = "process"
)

// Workspace holds the container defaults every workspace gets, and the
// maxima a workspace may ask for instead.
type Workspace struct {
	// Image is the default container image.
	Image string
	// Network is the container network mode ("bridge", "none", …).
	Network string
	// User runs the container's processes: "uid:gid" or a name.
	User string
	// MemoryMB, CPUs and Pids are the default limits (0 = none).
	MemoryMB int64
	CPUs     float64
	Pids     int64
	// MaxMemoryMB, MaxCPUs and MaxPids cap what a workspace may ask for.
	MaxMemoryMB int64
	MaxCPUs     float64
	MaxPids     int64
	// CapAdd lists the Linux capabilities kept; every other one is dropped.
	CapAdd []string
	// ImageAllow lists the glob patterns (path.Match: "*" stops at "/") of
	// the images a workspace may name besides the default and its own
	// builds; empty allows none.
	ImageAllow []string
	// IdleTimeout stops a running workspace nobody used for this long
	// (0 = never).
	IdleTimeout time.Duration
}

func (s *flagSet) addWorkspaceFlags(c *Config) {
	w := &c.Workspace
	s.section("Workspaces")
	s.fn("runtime", "auto|docker|process", RuntimeAuto,
		"Container runtime: `docker` (the engine named by `DOCKER_HOST`, default the local socket), `process` (commands run on this host in the workspace directory: NOT a sandbox, for development only), or `auto` (Docker when an engine answers, else process with a warning).",
		func(v string) error { return setChoice(&c.Runtime, v, RuntimeAuto, RuntimeDocker, RuntimeProcess) },
		func() any { return c.Runtime })
	s.str(&c.DockerHost, "docker-host", "url", "",
		"Docker engine to use, such as `unix:///var/run/docker.sock` or `tcp://127.0.0.1:2375`. Empty means the `DOCKER_HOST` variable, else the default socket.")
	s.str(&w.Image, "workspace-image", "image", "berth-workspace:latest",
		"Default container image for workspaces (a workspace may name its own). It needs a POSIX sh; see docs/workspace-image.Dockerfile.")
	s.list(&w.ImageAllow, "workspace-image-allow", "pattern,...",
		"Images a workspace may name instead of the default: glob patterns such as `python:3.*` or `registry.local/team/*`, comma-separated or repeated. `*` does not cross `/`; patterns match the name as written. Empty: only the default image and each workspace's own builds (`berth-build/<workspace id>:<tag>`). Checked again at every start. Do not allow `berth-build/*`: it would let any workspace run any other workspace's builds.")
	s.str(&w.Network, "workspace-network", "mode", "bridge",
		"Network mode of workspace containers: `bridge`, `none` (cuts them off entirely), `host` or a network name.")
	s.str(&w.User, "workspace-user", "uid:gid", DefaultWorkspaceUser(),
		"User that runs the processes in workspace containers (`uid:gid` or a name); keep it non-root. berth gives the directories it makes to it (when berth runs as root), or runs containers as itself (when not), so the container user owns its workspace.",
	).DefValue = "1000:1000 as root, else berth's uid:gid"
	s.count(&w.MemoryMB, "workspace-memory", "MiB", 2048,
		"Default memory limit of a workspace container, in MiB (0 = none).")
	s.number(&w.CPUs, "workspace-cpus", "cores", 2,
		"Default CPU limit of a workspace container, in cores such as 1.5 (0 = none).")
	s.count(&w.Pids, "workspace-pids", "count", 512,
		"Default process-count limit of a workspace container (0 = none).")
	s.count(&w.MaxMemoryMB, "workspace-max-memory", "MiB", 16384,
		"Most memory, in MiB, a workspace may ask for in `CreateWorkspace.resources` (0 = no cap).")
	s.number(&w.MaxCPUs, "workspace-max-cpus", "cores", 8,
		"Most CPU cores a workspace may ask for in `CreateWorkspace.resources` (0 = no cap).")
	s.count(&w.MaxPids, "workspace-max-pids", "count", 4096,
		"Most processes a workspace may ask for in `CreateWorkspace.resources` (0 = no cap).")
	s.list(&w.CapAdd, "workspace-cap-add", "CAP,...",
		"Linux capabilities kept in workspace containers, such as `CHOWN`, comma-separated or repeated; every other capability is dropped.")
	s.duration(&w.IdleTimeout, "workspace-idle-timeout", 30*time.Minute,
		"Stop a running workspace when nothing used it for this long: no running task, open stream or API call (0 = never). Named apart from `--idle-timeout`, which is about HTTP connections.")
}

// DefaultWorkspaceUser is --workspace-user's default: 1000:1000 when berth
// runs as root, which gives each workspace directory it makes to that
// user; otherwise berth's own uid:gid, as a berth that is not root can make
// directories only it owns, and the container user must own its directory
// (git refuses to work in a repository of "dubious ownership").
func DefaultWorkspaceUser() string {
	if uid := os.Geteuid(); uid != 0 {
		return strconv.Itoa(uid) + ":" + strconv.Itoa(os.Getegid())
	}
	return "1000:1000"
}

var capName = regexp.MustCompile(`^[A-Z_]+$`)

func (c *Config) checkWorkspace(p *problems) {
	w := &c.Workspace
	if w.Image == "" {
		p.add("workspace-image", w.Image, "want an image reference such as berth-workspace:latest")
	}
	for _, pattern := range w.ImageAllow {
		if _, err := path.Match(pattern, ""); err != nil {
			p.add("workspace-image-allow", pattern, "want glob patterns such as python:3.* or registry.local/team/*")
		}
	}
	if w.Network == "" {
		p.add("workspace-network", w.Network, `want a network mode such as "bridge" or "none"`)
	}
	for name, v := range map[string]float64{
		"workspace-memory": float64(w.MemoryMB), "workspace-cpus": w.CPUs, "workspace-pids": float64(w.Pids),
		"workspace-max-memory": float64(w.MaxMemoryMB), "workspace-max-cpus": w.MaxCPUs, "workspace-max-pids": float64(w.MaxPids),
	} {
		if v < 0 {
			p.add(name, fmt.Sprint(v), "want 0 or more")
		}
	}
	for _, pair := range []struct {
		def, max string
		d, m     float64
	}{
		{"workspace-memory", "workspace-max-memory", float64(w.MemoryMB), float64(w.MaxMemoryMB)},
		{"workspace-cpus", "workspace-max-cpus", w.CPUs, w.MaxCPUs},
		{"workspace-pids", "workspace-max-pids", float64(w.Pids), float64(w.MaxPids)},
	} {
		if pair.m > 0 && pair.d > pair.m {
			p.add(pair.def, fmt.Sprint(pair.d), "the default is above --%s (%v)", pair.max, pair.m)
		}
	}
	for i, cp := range w.CapAdd {
		cp = strings.ToUpper(strings.TrimPrefix(strings.ToUpper(cp), "CAP_"))
		if !capName.MatchString(cp) {
			p.add("workspace-cap-add", w.CapAdd[i], "want capability names such as CHOWN or NET_BIND_SERVICE")
		}
		w.CapAdd[i] = cp
	}
	if w.IdleTimeout < 0 {
		p.add("workspace-idle-timeout", formatDuration(w.IdleTimeout), "want 0 (never) or a positive duration")
	}
}
