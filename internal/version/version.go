// Package version holds berth's release version, for `berth version` and
// anything else that reports which build is running.
package version

// Version is the version of this build. Release builds set it at link
// time (`just build` passes the output of `git describe --always --dirty`):
//
//	go build -ldflags "-X github.com/berthhq/berth/internal/version.Version=v1.2.3" ./cmd/berth
//
// It is "dev" in a build that did not set it, such as `go run`. It is a
// variable, not a constant, because the linker can only set variables.
var Version = "dev"
