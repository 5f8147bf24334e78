package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

func (a *app) adminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage users and read the audit log (admins only)",
		Example: `  berth admin users --search example.com
  berth admin role <user id> viewer
  berth admin audit --action auth.login`,
	}
	var search, role string
	var page, pageSize int32
	users := &cobra.Command{
		Use:     "users",
		Short:   "List users",
		Example: `  berth admin users --role admin -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &berthv1.ListUsersRequest{Search: search, Page: page, PageSize: pageSize}
			if role != "" {
				r, err := parseRole(role)
				if err != nil {
					return err
				}
				req.Role = r
			}
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.admin.ListUsers(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.usersTable(res.GetUsers()) })
		},
	}
	users.Flags().StringVar(&search, "search", "", "only users whose email or name contains this")
	users.Flags().StringVar(&role, "role", "", "only users with this role: admin, member or viewer")
	users.Flags().Int32Var(&page, "page", 0, "page number, from 1")
	users.Flags().Int32Var(&pageSize, "page-size", 0, "users per page, at most 100")

	setRole := &cobra.Command{
		Use:     "role USER_ID ROLE",
		Short:   "Set a user's role: admin, member or viewer",
		Example: `  berth admin role <user id> admin`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := parseRole(args[1])
			if err != nil {
				return err
			}
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.admin.SetUserRole(cmd.Context(), &berthv1.SetUserRoleRequest{UserId: args[0], Role: r})
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.usersTable([]*berthv1.User{res.GetUser()}) })
		},
	}
	disable := &cobra.Command{
		Use:     "disable USER_ID",
		Short:   "Disable a user: their sessions and keys stop working",
		Example: `  berth admin disable <user id>`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.admin.DisableUser(cmd.Context(), &berthv1.DisableUserRequest{UserId: args[0]})
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.usersTable([]*berthv1.User{res.GetUser()}) })
		},
	}
	enable := &cobra.Command{
		Use:     "enable USER_ID",
		Short:   "Enable a disabled user",
		Example: `  berth admin enable <user id>`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.admin.EnableUser(cmd.Context(), &berthv1.EnableUserRequest{UserId: args[0]})
			if err != nil {
				return err
			}
			return a.print(res, func() *table { return a.usersTable([]*berthv1.User{res.GetUser()}) })
		},
	}
	var action, actor, target string
	var auditPage, auditSize int32
	audit := &cobra.Command{
		Use:     "audit",
		Short:   "Read the audit log, newest first",
		Example: `  berth admin audit --actor <user id> --page-size 50`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.admin.ListAuditEvents(cmd.Context(), &berthv1.ListAuditEventsRequest{Action: action, ActorId: actor, TargetId: target, Page: auditPage, PageSize: auditSize})
			if err != nil {
				return err
			}
			return a.print(res, func() *table {
				t := &table{header: []string{"TIME", "ACTION", "OUTCOME", "ACTOR", "TARGET", "FROM", "DETAILS"}}
				for _, e := range res.GetEvents() {
					t.add(e.GetTime().AsTime().Local().Format("2006-01-02 15:04:05"), e.GetAction(), e.GetOutcome(), e.GetActorId(),
						strings.Trim(e.GetTargetType()+":"+e.GetTargetId(), ":"), e.GetSourceAddress(), pairs(e.GetDetails()))
				}
				return t
			})
		},
	}
	audit.Flags().StringVar(&action, "action", "", "only this action, such as auth.login")
	audit.Flags().StringVar(&actor, "actor", "", "only events by this user id")
	audit.Flags().StringVar(&target, "target", "", "only events on this id")
	audit.Flags().Int32Var(&auditPage, "page", 0, "page number, from 1")
	audit.Flags().Int32Var(&auditSize, "page-size", 0, "events per page, at most 100")
	cmd.AddCommand(users, setRole, disable, enable, audit)
	return cmd
}

// pairs writes a map as sorted k=v pairs.
func pairs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + m[k]
	}
	return strings.Join(out, " ")
}

func (a *app) statsCmd() *cobra.Command {
	var global bool
	cmd := &cobra.Command{
		Use:     "stats",
		Short:   "Show workspace and task counts and the total agent cost",
		Example: "  berth stats\n  berth stats --global -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.stats.GetStats(cmd.Context(), &berthv1.GetStatsRequest{Global: global})
			if err != nil {
				return err
			}
			return a.print(res, func() *table {
				t := &table{header: []string{"WHAT", "COUNT"}}
				if res.Users != nil {
					t.add("users", fmt.Sprint(res.GetUsers()))
				}
				t.add("workspaces", fmt.Sprint(res.GetWorkspaces()))
				for _, k := range sortedKeys(res.GetWorkspacesByStatus()) {
					t.add("  "+k, fmt.Sprint(res.GetWorkspacesByStatus()[k]))
				}
				t.add("tasks", fmt.Sprint(res.GetTasks()))
				for _, k := range sortedKeys(res.GetTasksByStatus()) {
					t.add("  "+k, fmt.Sprint(res.GetTasksByStatus()[k]))
				}
				t.add("agent cost", fmt.Sprintf("$%.4f", res.GetTotalCostUsd()))
				return t
			})
		},
	}
	cmd.Flags().BoolVar(&global, "global", false, "everyone's figures (admins only)")
	return cmd
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
