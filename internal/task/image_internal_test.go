package task

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/fault"
)

func TestBuildTag(t *testing.T) {
	t.Parallel()
	const ws, other, taskID = "6f1c2b9e-0d4a-4e57-9a53-1f2e3d4c5b6a", "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d", "deadbeef-0000-4000-8000-000000000000"
	repo := "berth-build/" + ws
	for requested, want := range map[string]string{
		"":                       repo + ":deadbeef",
		"v1":                     repo + ":v1",
		"_x.y-z":                 repo + ":_x.y-z",
		"Latest":                 repo + ":Latest",
		repo + ":v2":             repo + ":v2",
		strings.Repeat("a", 128): repo + ":" + strings.Repeat("a", 128),
	} {
		if got, err := buildTag(ws, taskID, requested); err != nil || got != want {
			t.Errorf("buildTag(%q) = %q, %v; want %q", requested, got, err, want)
		}
	}
	for _, requested := range []string{
		"berth-workspace:latest", "busybox:latest", "registry.local/team/app:v1",
		"berth-build/" + other + ":x", "berth-build/" + ws, "berth-build/" + ws + ":", "berth-build/" + ws + ":-x",
		"berth-build/" + ws + "/sub:x", "BERTH-BUILD/" + ws + ":x", "berth-build/" + strings.ToUpper(ws) + ":x",
		repo + "@sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("a", 64),
		".hidden", "-x", strings.Repeat("a", 129), "a b", "v1\n",
	} {
		_, err := buildTag(ws, taskID, requested)
		var fe *fault.Error
		if !errors.As(err, &fe) || !errors.Is(err, fault.ErrInvalid) || len(fe.Violations) != 1 || fe.Violations[0].Field != "docker_build.tag" ||
			!strings.Contains(fe.Violations[0].Reason, repo+":<tag>") {
			t.Errorf("buildTag(%q) = %v, want an invalid docker_build.tag naming %s:<tag>", requested, err, repo)
		}
	}
}

func TestCheckDockerfile(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "Dockerfile", "docker/app.Dockerfile", "a..b/Dockerfile"} {
		if err := checkDockerfile(ok); err != nil {
			t.Errorf("checkDockerfile(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"../../../etc/passwd", "/etc/passwd", "..", "./Dockerfile", "a//b", "a/../b", "a/", "x\x00y", strings.Repeat("a/", 2049)} {
		if err := checkDockerfile(bad); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("checkDockerfile(%q) = %v, want invalid", bad, err)
		}
	}
}
