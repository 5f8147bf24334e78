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

func defaultWorkspace() Workspace {
	return Workspace{
		Image:       "berth-workspace:latest",
		Network:     "bridge",
		User:        DefaultWorkspaceUser(),
		MemoryMB:    2048,
		CPUs:        2,
		Pids:        512,
		MaxMemoryMB: 16384,
		MaxCPUs:     8,
		MaxPids:     4096,
		IdleTimeout: 30 * time.Minute,
	}
}

func (s *flagSet) addWorkspaceFlags(c *Config) {
	w := &c.Workspace
	s.section("Workspaces")
	s.add(&choiceValue{p: &c.Runtime, choices: []string{RuntimeAuto, RuntimeDocker, RuntimeProcess}}, "runtime", "auto|docker|process", c.Runtime,
		"Container runtime: docker (the engine named by DOCKER_HOST, default the local socket), process (commands run on this host in the workspace directory: NOT a sandbox, for development only), or auto (docker when an engine answers, else process with a warning).")
	s.add(&stringValue{&c.DockerHost}, "docker-host", "url", "",
		"Docker engine to use, such as unix:///var/run/docker.sock or tcp://127.0.0.1:2375. Empty means the DOCKER_HOST variable, else the default socket.")
	s.add(&stringValue{&w.Image}, "workspace-image", "image", w.Image,
		"Default container image for workspaces (a workspace may name its own). It needs a POSIX sh; see docs/workspace-image.Dockerfile.")
	s.add(&listValue{&w.ImageAllow}, "workspace-image-allow", "pattern,...", "",
		`Images a workspace may name instead of the default, as glob patterns such as "python:3.*" or "registry.local/team/*" ("*" does not cross "/"); comma-separated or repeated. Empty: only the default image and the workspace's own builds (berth-build/<workspace id>:<tag>). Checked again at every start.`)
	s.add(&stringValue{&w.Network}, "workspace-network", "mode", w.Network,
		`Network mode of workspace containers: "bridge", "none" (no network at all), "host" or a network name.`)
	s.add(&stringValue{&w.User}, "workspace-user", "uid:gid", w.User,
		"User that runs the processes in workspace containers. Keep it non-root; it should own (or be able to write) the project directories.")
	s.add(&int64Value{&w.MemoryMB}, "workspace-memory", "MiB", strconv.FormatInt(w.MemoryMB, 10),
		"Default memory limit of a workspace container in MiB (0 = none).")
	s.add(&floatValue{&w.CPUs}, "workspace-cpus", "cores", strconv.FormatFloat(w.CPUs, 'g', -1, 64),
		"Default CPU limit of a workspace container in cores, such as 1.5 (0 = none).")
	s.add(&int64Value{&w.Pids}, "workspace-pids", "count", strconv.FormatInt(w.Pids, 10),
		"Default process-count limit of a workspace container (0 = none).")
	s.add(&int64Value{&w.MaxMemoryMB}, "workspace-max-memory", "MiB", strconv.FormatInt(w.MaxMemoryMB, 10),
		"Most memory a workspace may ask for, in MiB (0 = no cap).")
	s.add(&floatValue{&w.MaxCPUs}, "workspace-max-cpus", "cores", strconv.FormatFloat(w.MaxCPUs, 'g', -1, 64),
		"Most CPU cores a workspace may ask for (0 = no cap).")
	s.add(&int64Value{&w.MaxPids}, "workspace-max-pids", "count", strconv.FormatInt(w.MaxPids, 10),
		"Most processes a workspace may ask for (0 = no cap).")
	s.add(&listValue{&w.CapAdd}, "workspace-cap-add", "CAP,...", "",
		"Linux capabilities kept in workspace containers, comma-separated (such as CHOWN); every other capability is dropped.")
	s.add(&durationValue{&w.IdleTimeout}, "workspace-idle-timeout", "duration", formatDuration(w.IdleTimeout),
		"Stop a running workspace when nothing used it for this long: no running task, open stream or API call (0 = never). Named apart from --idle-timeout, which is about HTTP connections.")
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

// choiceValue is a string that must be one of choices.
type choiceValue struct {
	p       *string
	choices []string
}

func (v *choiceValue) String() string { return *v.p }
func (v *choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(v.choices, ", "))
}
func (v *choiceValue) setFromEnv(s string) error { return v.Set(s) }

type int64Value struct{ p *int64 }

func (v *int64Value) String() string { return strconv.FormatInt(*v.p, 10) }
func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return fmt.Errorf("want a whole number")
	}
	*v.p = n
	return nil
}
func (v *int64Value) setFromEnv(s string) error { return v.Set(s) }

type floatValue struct{ p *float64 }

func (v *floatValue) String() string { return strconv.FormatFloat(*v.p, 'g', -1, 64) }
func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return fmt.Errorf("want a number such as 1.5")
	}
	*v.p = f
	return nil
}
func (v *floatValue) setFromEnv(s string) error { return v.Set(s) }

// listValue is a comma-separated list; repeating the flag appends.
type listValue struct{ p *[]string }

func (v *listValue) String() string { return strings.Join(*v.p, ",") }
func (v *listValue) Set(s string) error {
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*v.p = append(*v.p, item)
		}
	}
	return nil
}
func (v *listValue) setFromEnv(s string) error { return v.Set(s) }
