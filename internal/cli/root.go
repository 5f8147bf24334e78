package cli

import (
	"github.com/spf13/cobra"
)

// root builds the command tree. The server's commands are listed here with
// flag parsing off and run through their own code: their flags and help
// stay exactly what they are.
func (a *app) root(server []ServerCommand) *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "berth runs AI-agent, git and docker-build tasks in per-workspace containers",
		Long: `berth is both the server and its terminal client.

Client commands talk to the server named by --server, else BERTH_SERVER,
else the one you last logged in to, else ` + defaultServer + `.
BERTH_TOKEN (an API key or access token) overrides stored credentials.`,
		Example: `  berth login --server http://127.0.0.1:8080 --email you@example.com
  berth ws create demo
  berth task run demo --claude "Summarise the README"`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.checkFormat()
		},
	}
	root.PersistentFlags().StringVar(&a.server, "server", "", "server URL (env BERTH_SERVER)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", formatTable, "output format of reads: table, json or yaml")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{formatTable, formatJSON, formatYAML}, cobra.ShellCompDirectiveNoFileComp)) // only fails for an unknown flag
	root.AddGroup(&cobra.Group{ID: "client", Title: "Client commands:"}, &cobra.Group{ID: "server", Title: "Server commands:"})

	for _, c := range []*cobra.Command{a.loginCmd(), a.logoutCmd(), a.whoamiCmd(), a.workspaceCmd(), a.taskCmd(), a.keyCmd(), a.adminCmd(), a.statsCmd()} {
		c.GroupID = "client"
		root.AddCommand(c)
	}
	for _, s := range server {
		run := s.Run
		root.AddCommand(&cobra.Command{
			Use:                s.Name,
			Short:              s.Short,
			Example:            "  berth " + s.Name + " --help",
			GroupID:            "server",
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				if code := run(args); code != 0 {
					return exitError{code: code}
				}
				return nil
			},
		})
	}
	root.SetHelpCommandGroupID("client")
	root.SetCompletionCommandGroupID("client")
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  source <(berth completion bash)
  berth completion zsh > "${fpath[1]}/_berth"
  berth completion fish > ~/.config/fish/completions/berth.fish`
		}
	}
	return root
}
