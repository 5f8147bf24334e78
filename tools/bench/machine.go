package main

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where the figures come from.
type machine struct {
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	MemTotal  string `json:"mem_total"`
	Kernel    string `json:"kernel"`
	LoadAvg   string `json:"load_average_at_start"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit"`
	Dirty     bool   `json:"dirty"`
	Date      string `json:"date"`
}

// describeMachine reads /proc, the Go runtime and git.
func describeMachine() machine {
	m := machine{
		CPU:       procField("/proc/cpuinfo", "model name"),
		CPUs:      countProcessors(),
		MemTotal:  procField("/proc/meminfo", "MemTotal"),
		GoVersion: runtime.Version(),
		Commit:    "unknown",
		Date:      time.Now().UTC().Format(time.RFC3339),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain").Output(); err == nil {
		m.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return m
}

// line is the machine in one line, for the table's heading.
func (m machine) line() string {
	dirty := ""
	if m.Dirty {
		dirty = " (dirty tree)"
	}
	return "berth " + m.Commit + dirty + " · " + m.CPU + " × " + strconv.Itoa(m.CPUs) + " · " + m.MemTotal +
		" RAM · Linux " + m.Kernel + " · " + m.GoVersion + " · load " + m.LoadAvg + " at start · " + m.Date
}

// procField is the value of the first "name : value" line of a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path) // #nosec G304 -- fixed /proc paths
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// countProcessors counts the "processor" lines of /proc/cpuinfo (the
// runtime's count when there is none).
func countProcessors() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	if n == 0 {
		return runtime.NumCPU()
	}
	return n
}
