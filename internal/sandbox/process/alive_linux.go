package process

import (
	"bytes"
	"os"
	"strconv"
)

// alive reports whether the group has a member that is not a zombie. Dead
// processes stay in their group until reaped, and where nobody reaps
// orphans (some container inits) they would keep a killed group "alive"
// forever, so /proc is read instead of probing with kill(-pgid, 0).
func (g *group) alive() bool {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return g.probe()
	}
	for _, d := range dirs {
		name := d.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		// #nosec G304 -- a numeric /proc entry read by this process
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 3 || string(f[0]) == "Z" || string(f[0]) == "X" {
			continue
		}
		if pgrp, err := strconv.Atoi(string(f[2])); err == nil && pgrp == g.pgid {
			return true
		}
	}
	return false
}
