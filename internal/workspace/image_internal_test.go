package workspace

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/fault"
)

func TestCheckImage(t *testing.T) {
	t.Parallel()
	c := Containers{Image: "berth-workspace:latest", ImageAllow: []string{"python:3.*", "registry.local/team/*"}}
	const ws, other = "6f1c2b9e-0d4a-4e57-9a53-1f2e3d4c5b6a", "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
	for _, tc := range []struct {
		workspace, image string
	}{
		{ws, ""}, {"", ""}, {ws, "berth-workspace:latest"}, {"", "python:3.12"}, {ws, "registry.local/team/app:v1"},
		{ws, "berth-build/" + ws + ":v1"}, {ws, "berth-build/" + ws + ":latest"},
	} {
		if err := c.checkImage(tc.workspace, tc.image); err != nil {
			t.Errorf("checkImage(%q, %q) = %v", tc.workspace, tc.image, err)
		}
	}
	for _, tc := range []struct {
		workspace, image string
	}{
		{ws, "berth-build/" + other + ":v1"}, {"", "berth-build/" + ws + ":v1"}, {ws, "berth-build/" + ws},
		{ws, "berth-build/" + ws + "/x:v1"}, {ws, "python:2.7"}, {ws, "registry.local/team/sub/app:v1"},
		{ws, "registry.local/other/app:v1"}, {ws, "busybox"}, {ws, "berth-workspace:old"},
	} {
		err := c.checkImage(tc.workspace, tc.image)
		var fe *fault.Error
		if !errors.As(err, &fe) || !errors.Is(err, fault.ErrInvalid) || len(fe.Violations) != 1 || fe.Violations[0].Field != "image" ||
			!strings.Contains(fe.Violations[0].Reason, "python:3.*, registry.local/team/*") {
			t.Errorf("checkImage(%q, %q) = %v, want an invalid image naming the allowed patterns", tc.workspace, tc.image, err)
		}
	}
	if err := (Containers{Image: "d:1"}).checkImage(ws, "python:3.12"); !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "(none)") {
		t.Errorf("with no allow-list: %v", err)
	}
}
