package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc/PID/stat's CPU times: USER_HZ, 100 on every
// Linux architecture Go runs on.
const userHZ = 100

// processCPU is the CPU time (user and system) process pid has used, from
// /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	d, err := statCPU(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// statCPU is utime + stime of a /proc/PID/stat line.
func statCPU(s string) (time.Duration, error) {
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields from after its closing one (field 3 is the first).
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU berth and the harness use over a span.
type cpuMeter struct {
	pid         int
	berth, self time.Duration
}

// startCPU starts measuring; a berth whose /proc cannot be read counts 0.
func startCPU(pid int) cpuMeter {
	b, _ := processCPU(pid)
	return cpuMeter{pid: pid, berth: b, self: selfCPU()}
}

// stop returns the CPU seconds berth and the harness used since start.
func (m cpuMeter) stop() (berth, harness float64) {
	b, _ := processCPU(m.pid)
	return (b - m.berth).Seconds(), (selfCPU() - m.self).Seconds()
}
