//go:build !linux

package process

// alive reports whether the group has a member (zombies included: without
// /proc they cannot be told apart).
func (g *group) alive() bool { return g.probe() }
