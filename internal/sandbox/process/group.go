package process

import (
	"syscall"
	"time"
)

// killWait bounds the wait for a process group to vanish after SIGKILL:
// generous, as a loaded machine may take seconds to schedule the exits, and
// the wait ends as soon as the group is empty.
const killWait = 10 * time.Second

// group is the process group of one command: its first process and
// everything that process started without leaving the group.
type group struct {
	pgid int
}

func (g *group) signal(sig syscall.Signal) {
	_ = syscall.Kill(-g.pgid, sig) // ESRCH: nobody left
}

// endGroups sends SIGTERM to every group, waits up to grace for them to
// empty, then sends SIGKILL to what is left and waits for it to go.
func endGroups(gs []*group, grace time.Duration) {
	for _, g := range gs {
		g.signal(syscall.SIGTERM)
	}
	if waitGone(gs, grace) {
		return
	}
	for _, g := range gs {
		g.signal(syscall.SIGKILL)
	}
	waitGone(gs, killWait)
}

// waitGone polls until no group has a live member, for at most d, and
// reports whether they are all gone.
func waitGone(gs []*group, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		alive := false
		for _, g := range gs {
			if g.alive() {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe asks the kernel whether the group has any member at all.
func (g *group) probe() bool {
	return syscall.Kill(-g.pgid, 0) == nil
}
