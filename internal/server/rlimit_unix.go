//go:build unix

package server

import "syscall"

// descriptorLimit raises the soft limit on open descriptors to the hard
// limit, as far as the system allows, and returns it (0 when unknown).
// (Go raises it at start already on most systems; this says what it is.)
func descriptorLimit() int64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	if lim.Cur > 1<<40 { // RLIM_INFINITY
		return 1 << 40
	}
	return int64(lim.Cur)
}
