package cli

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/spf13/cobra"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

// resolveWorkspace turns a workspace name or id into its id. A UUID is
// taken as an id; anything else is looked up by exact name among the
// workspaces the caller can see.
func resolveWorkspace(ctx context.Context, c *clients, ref string) (string, error) {
	if looksLikeUUID(ref) {
		return ref, nil
	}
	var ids []string
	for page := int32(1); ; page++ {
		res, err := c.workspace.ListWorkspaces(ctx, &berthv1.ListWorkspacesRequest{Search: ref, Page: page, PageSize: 100})
		if err != nil {
			return "", err
		}
		for _, w := range res.GetWorkspaces() {
			if w.GetName() == ref {
				ids = append(ids, w.GetId())
			}
		}
		if !res.GetPagination().GetHasNext() {
			break
		}
	}
	switch len(ids) {
	case 0:
		return "", connect.NewError(connect.CodeNotFound, fmt.Sprintf("no workspace named %q (berth ws list shows yours)", ref))
	case 1:
		return ids[0], nil
	}
	return "", usageError{fmt.Errorf("%d workspaces are named %q: name one by id (%s)", len(ids), ref, strings.Join(ids, ", "))}
}

func looksLikeUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", r):
			return false
		}
	}
	return true
}

func (a *app) workspacesTable(ws []*berthv1.Workspace) *table {
	t := &table{header: []string{"ID", "NAME", "STATUS", "TASKS", "RUNNING", "CREATED", "PATH"}}
	now := a.now()
	for _, w := range ws {
		t.add(w.GetId(), w.GetName(), enumName(w.GetStatus().String(), "WORKSPACE_STATUS_"),
			fmt.Sprint(w.GetStats().GetTotalTasks()), fmt.Sprint(w.GetStats().GetRunningTasks()), ago(w.GetCreatedAt(), now), w.GetPath())
	}
	return t
}

// workspaceCompletion completes workspace names.
func (a *app) workspaceCompletion(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.connect(true)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	res, err := c.workspace.ListWorkspaces(cmd.Context(), &berthv1.ListWorkspacesRequest{PageSize: 100})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, w := range res.GetWorkspaces() {
		names = append(names, w.GetName())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) workspaceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workspace",
		Aliases: []string{"ws"},
		Short:   "Manage workspaces (named by name or id)",
		Example: `  berth ws create demo
  berth ws list
  berth ws share demo colleague@example.com --role editor`,
	}

	var search, status, sort string
	var page, pageSize int32
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the workspaces you can see",
		Example: `  berth ws list --search demo --status running -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.workspace.ListWorkspaces(cmd.Context(), &berthv1.ListWorkspacesRequest{Search: search, Status: status, Sort: sort, Page: page, PageSize: pageSize})
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.workspacesTable(res.GetWorkspaces()) })
		},
	}
	list.Flags().StringVar(&search, "search", "", "only workspaces whose name or description contains this")
	list.Flags().StringVar(&status, "status", "", "active, archived, creating, stopped, starting, running, stopping or error")
	list.Flags().StringVar(&sort, "sort", "", "name, -name, created_at or -created_at")
	list.Flags().Int32Var(&page, "page", 0, "page number, from 1")
	list.Flags().Int32Var(&pageSize, "page-size", 0, "workspaces per page, at most 100")

	var create berthv1.CreateWorkspaceRequest
	createCmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a workspace (berth makes its directory unless --path names one)",
		Example: `  berth ws create demo --description "scratch project"
  berth ws create site --git-url https://github.com/you/site.git --branch main`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			create.Name = args[0]
			res, err := c.workspace.CreateWorkspace(cmd.Context(), &create)
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.workspacesTable([]*berthv1.Workspace{res.GetWorkspace()}) })
		},
	}
	createCmd.Flags().StringVar(&create.Description, "description", "", "what the workspace is for")
	createCmd.Flags().StringVar(&create.Path, "path", "", "an existing directory inside a workspace root (admins only)")
	createCmd.Flags().StringVar(&create.GitUrl, "git-url", "", "repository to clone into the workspace")
	createCmd.Flags().StringVar(&create.Branch, "branch", "", "branch to check out")
	createCmd.Flags().StringVar(&create.Image, "image", "", "container image (default: the server's)")
	createCmd.Flags().StringSliceVar(&create.Tags, "tag", nil, "tag (repeatable)")

	get := a.workspaceAction("get WORKSPACE", "Show one workspace", `  berth ws get demo -o yaml`,
		func(ctx context.Context, c *clients, id string) (*berthv1.Workspace, error) {
			res, err := c.workspace.GetWorkspace(ctx, &berthv1.GetWorkspaceRequest{Id: id})
			return res.GetWorkspace(), err
		})
	start := a.workspaceAction("start WORKSPACE", "Start a workspace's container", `  berth ws start demo`,
		func(ctx context.Context, c *clients, id string) (*berthv1.Workspace, error) {
			res, err := c.workspace.StartWorkspace(ctx, &berthv1.StartWorkspaceRequest{Id: id})
			return res.GetWorkspace(), err
		})
	stop := a.workspaceAction("stop WORKSPACE", "Stop a workspace's container", `  berth ws stop demo`,
		func(ctx context.Context, c *clients, id string) (*berthv1.Workspace, error) {
			res, err := c.workspace.StopWorkspace(ctx, &berthv1.StopWorkspaceRequest{Id: id})
			return res.GetWorkspace(), err
		})

	var deleteDir bool
	del := &cobra.Command{
		Use:               "delete WORKSPACE",
		Short:             "Delete a workspace",
		Example:           `  berth ws delete demo --delete-directory`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.workspaceCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.workspaceArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if _, err := c.workspace.DeleteWorkspace(cmd.Context(), &berthv1.DeleteWorkspaceRequest{Id: id, DeleteDirectory: deleteDir}); err != nil {
				return err
			}
			fmt.Fprintf(a.io.Err, "Workspace %s deleted.\n", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&deleteDir, "delete-directory", false, "also delete the directory berth made for it")

	var role string
	share := &cobra.Command{
		Use:               "share WORKSPACE EMAIL",
		Short:             "Give another user access to a workspace",
		Example:           `  berth ws share demo colleague@example.com --role viewer`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.workspaceCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, ok := berthv1.WorkspaceRole_value["WORKSPACE_ROLE_"+strings.ToUpper(role)]
			if !ok || (role != "editor" && role != "viewer") {
				return usageError{fmt.Errorf("--role %q: want editor or viewer", role)}
			}
			c, id, err := a.workspaceArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			req := &berthv1.AddMemberRequest{WorkspaceId: id, Role: berthv1.WorkspaceRole(r)}
			if looksLikeUUID(args[1]) {
				req.UserId = args[1]
			} else {
				req.Email = args[1]
			}
			res, err := c.workspace.AddMember(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.membersTable([]*berthv1.Member{res.GetMember()}) })
		},
	}
	share.Flags().StringVar(&role, "role", "editor", "editor (runs tasks) or viewer (reads)")

	members := &cobra.Command{
		Use:               "members WORKSPACE",
		Short:             "List who can use a workspace",
		Example:           `  berth ws members demo`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.workspaceCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.workspaceArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			res, err := c.workspace.ListMembers(cmd.Context(), &berthv1.ListMembersRequest{WorkspaceId: id})
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.membersTable(res.GetMembers()) })
		},
	}
	cmd.AddCommand(list, createCmd, get, start, stop, del, share, members, a.workspaceWatchCmd())
	return cmd
}

func (a *app) membersTable(ms []*berthv1.Member) *table {
	t := &table{header: []string{"USER ID", "EMAIL", "NAME", "ROLE", "SINCE"}}
	now := a.now()
	for _, m := range ms {
		t.add(m.GetUserId(), m.GetEmail(), m.GetName(), enumName(m.GetRole().String(), "WORKSPACE_ROLE_"), ago(m.GetCreatedAt(), now))
	}
	return t
}

// workspaceArg connects and resolves a workspace argument.
func (a *app) workspaceArg(ctx context.Context, ref string) (*clients, string, error) {
	c, err := a.connect(true)
	if err != nil {
		return nil, "", err
	}
	id, err := resolveWorkspace(ctx, c, ref)
	return c, id, err
}

// workspaceAction is a command that takes one workspace and shows it.
func (a *app) workspaceAction(use, short, example string, call func(context.Context, *clients, string) (*berthv1.Workspace, error)) *cobra.Command {
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Example:           example,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.workspaceCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.workspaceArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w, err := call(cmd.Context(), c, id)
			if err != nil {
				return err
			}
			return a.print(&berthv1.GetWorkspaceResponse{Workspace: w}, func() *table { return a.workspacesTable([]*berthv1.Workspace{w}) })
		},
	}
}
