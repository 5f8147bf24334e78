package workspace

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/berthhq/berth/internal/access"
	"github.com/berthhq/berth/internal/audit"
	"github.com/berthhq/berth/internal/fault"
	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
	"github.com/berthhq/berth/internal/sandbox"
	"github.com/berthhq/berth/internal/store"
)

// A workspace's image runs with its owner's files, prompts and API key, so
// whoever can write that image owns the workspace. The rule is therefore
// about who wrote the image: the server's default (an operator's), an image
// an admin allowed (ImageAllow), or one of the workspace's own builds
// (berth-build/<its id>:<tag>, which only its own docker_build tasks can
// write). Any other name — another workspace's builds above all — is
// refused when it is asked for and again at every start, since the
// allow-list may have changed since.

// checkImage applies the image rule to image, asked for by workspace
// workspaceID ("" while it is being created and has no id yet).
func (c Containers) checkImage(workspaceID, image string) error {
	if image == "" || image == c.Image || sandbox.IsBuildOf(image, workspaceID) {
		return nil
	}
	for _, pattern := range c.ImageAllow {
		if ok, _ := path.Match(pattern, image); ok {
			return nil
		}
	}
	allowed := "none"
	if len(c.ImageAllow) > 0 {
		allowed = strings.Join(c.ImageAllow, ", ")
	}
	return fault.Invalid("image", fmt.Sprintf(
		"must be empty (the server's default image, %s), match an image this server allows (%s), "+
			"or be one of this workspace's own builds, %s<workspace id>:<tag>, which an existing workspace can switch to with UpdateWorkspace",
		c.Image, allowed, sandbox.BuildRepositoryPrefix))
}

// imageOf is the image reference workspace w runs: its own, or the default.
func (c Containers) imageOf(w *store.Workspace) string {
	if w.Image != "" {
		return w.Image
	}
	return c.Image
}

// resolveImage checks w's image against the rule as it is configured now
// and resolves it to the id of the image the engine has under that name
// now ("" on a runtime without images).
func (s *Service) resolveImage(ctx context.Context, w *store.Workspace) (string, error) {
	if err := s.containers.checkImage(w.ID, w.Image); err != nil {
		msg, _ := fault.Message(err)
		return "", fault.New(fault.ErrFailedPrecondition, "its image %q is not allowed on this server (any more): %s; set another with UpdateWorkspace", w.Image, strings.TrimPrefix(msg, "image: "))
	}
	return s.runtime.ImageID(ctx, s.containers.imageOf(w))
}

// createContainer makes w's container from the image its reference names
// right now, by id, so that moving the tag afterwards cannot change what
// the container runs; it returns the container's id and the image's.
func (s *Service) createContainer(ctx context.Context, w *store.Workspace) (containerID, imageID string, err error) {
	imageID, err = s.resolveImage(ctx, w)
	if err != nil {
		return "", "", err
	}
	spec := s.containers.containerSpec(w)
	if imageID != "" {
		spec.Image = imageID
	}
	containerID, err = s.runtime.Create(ctx, spec)
	return containerID, imageID, err
}

// containerFault turns a failure to make or start w's container into the
// error the caller gets: FailedPrecondition when retrying cannot help (the
// image is missing or not allowed), Unavailable otherwise.
func containerFault(what string, cause error) error {
	kind := fault.ErrUnavailable
	if errors.Is(cause, sandbox.ErrImageNotFound) || errors.Is(cause, fault.ErrFailedPrecondition) {
		kind = fault.ErrFailedPrecondition
	}
	msg := cause.Error()
	if m, ok := fault.Message(cause); ok {
		msg, cause = m, nil
	}
	return &fault.Error{Kind: kind, Message: "the workspace " + what + ": " + msg, Cause: cause}
}

// SetImage makes workspace id run image from its next start: the default
// (""), an allowed image, or one of its own builds. Owners, editors and
// admins may; the running container is replaced when it next starts.
func (s *Service) SetImage(ctx context.Context, p access.Principal, id, image string) (*store.Workspace, error) {
	if err := s.containers.checkImage(id, image); err != nil {
		return nil, err
	}
	w, err := s.store.FindWorkspace(ctx, id, p.Viewer())
	if err != nil {
		return nil, err
	}
	if w.AccessRole == store.WorkspaceViewer {
		return nil, fault.New(fault.ErrPermissionDenied, "your role in this workspace (viewer) does not allow changing it")
	}
	updated, err := s.store.UpdateWorkspace(ctx, id, store.WorkspaceUpdate{Image: &image}, s.now().UTC())
	if err != nil {
		return nil, err
	}
	s.forget(ctx, id)
	s.audit.Record(ctx, audit.Event{Action: audit.ActionWorkspaceImage, TargetType: "workspace", TargetID: id,
		Details: map[string]string{"image": image, "previous": w.Image}})
	updated.AccessRole, updated.Stats = w.AccessRole, w.Stats
	return updated, nil
}

// Proto is ToProto with the image in effect filled in: the workspace's
// own, or this server's default.
func (s *Service) Proto(w *store.Workspace) *berthv1.Workspace {
	pb := ToProto(w)
	pb.Image = s.containers.imageOf(w)
	return pb
}
