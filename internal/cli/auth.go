package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "github.com/berthhq/berth/internal/gen/berth/v1"
)

func (a *app) loginCmd() *cobra.Command {
	var email, oidcName string
	var passwordStdin, sso, noBrowser bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in with a password or through OIDC in the browser, and store the tokens for this server",
		Long: `Log in to a berth server with your email and password, or through one of
its OpenID Connect providers in your browser.

With a password: the password is asked for without echo, or read from the
first line of standard input with --password-stdin.

With --oidc NAME (or --sso, which picks the server's only provider): berth
listens on 127.0.0.1 on a free port and opens the provider's sign-in in
your browser; once you have signed in, the browser comes back to that
port with a one-time code, which berth exchanges for tokens using a PKCE
verifier that never leaves this process. The URL is printed too: on a
machine without a browser (or with --no-browser or BERTH_NO_BROWSER=1),
open it in a browser on the same machine, as the sign-in returns to its
loopback address.

Either way the access and refresh tokens are stored per server in
<config dir>/berth/credentials.json (mode 0600) and the access token is
refreshed automatically; the server becomes the default for later
commands. For scripts, create an API key and set BERTH_TOKEN instead.`,
		Example: `  berth login --server http://127.0.0.1:8080 --email you@example.com
  echo "$PASSWORD" | berth login --email you@example.com --password-stdin
  berth login --server https://berth.example.com --oidc google
  berth login --sso --no-browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(false)
			if err != nil {
				return err
			}
			if oidcName != "" || sso {
				if email != "" || passwordStdin {
					return usageError{errors.New("--oidc and --sso sign in through the browser: drop --email and --password-stdin")}
				}
				noBrowser = noBrowser || a.env["BERTH_NO_BROWSER"] != "" && a.env["BERTH_NO_BROWSER"] != "0"
				user, tokens, err := a.oidcLogin(cmd.Context(), c, oidcName, sso, !noBrowser)
				if err != nil {
					return err
				}
				return a.saveLogin(c.server, user, tokens)
			}
			in := bufio.NewReader(a.io.In)
			interactive := isTerminal(a.io.In)
			if email == "" {
				if !interactive {
					return usageError{errors.New("--email is required when standard input is not a terminal")}
				}
				fmt.Fprint(a.io.Err, "Email: ")
				line, err := in.ReadString('\n')
				if err != nil {
					return fmt.Errorf("reading the email: %w", err)
				}
				email = strings.TrimSpace(line)
			}
			var password string
			switch {
			case passwordStdin:
				line, err := in.ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("reading the password from standard input: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			case interactive:
				f, _ := a.io.In.(*os.File) // isTerminal said it is one
				p, err := readPassword(f, a.io.Err)
				if err != nil {
					return fmt.Errorf("reading the password: %w", err)
				}
				password = p
			default:
				return usageError{errors.New("standard input is not a terminal: pass the password with --password-stdin")}
			}
			res, err := c.auth.Login(cmd.Context(), &berthv1.LoginRequest{Email: email, Password: password})
			if err != nil {
				return err
			}
			return a.saveLogin(c.server, res.GetUser(), res.GetTokens())
		},
	}
	cmd.Flags().StringVar(&email, "email", "", "account email (asked for when omitted on a terminal)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.Flags().StringVar(&oidcName, "oidc", "", "sign in through the server's OIDC provider NAME in the browser")
	cmd.Flags().BoolVar(&sso, "sso", false, "sign in through the server's OIDC provider in the browser (the only one it has, or name it with --oidc)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "with --oidc or --sso, print the sign-in URL instead of opening a browser (env BERTH_NO_BROWSER=1)")
	return cmd
}

// saveLogin stores a login's tokens for server, makes it the default
// server, and says who is logged in.
func (a *app) saveLogin(server string, user *berthv1.User, tokens *berthv1.Tokens) error {
	store, err := a.credentials()
	if err != nil {
		return err
	}
	creds := credentialsFromTokens(user.GetEmail(), tokens)
	if err := store.update(func(f *credentialsFile) {
		f.Servers[server] = creds
		f.Current = server
	}); err != nil {
		return err
	}
	fmt.Fprintf(a.io.Err, "Logged in to %s as %s (%s).\n", server, accountName(user), enumName(user.GetRole().String(), "ROLE_"))
	return nil
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Revoke this server's session and forget its tokens",
		Example: `  berth logout --server http://127.0.0.1:8080`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			server, err := a.serverURL()
			if err != nil {
				return err
			}
			store, err := a.credentials()
			if err != nil {
				return err
			}
			creds, err := store.get(server)
			if err != nil {
				return err
			}
			if creds == nil {
				fmt.Fprintf(a.io.Err, "Not logged in to %s.\n", server)
				return nil
			}
			// Revoke on the server first (with the stored tokens, refreshed
			// if need be, never BERTH_TOKEN); the local tokens go whatever it
			// says, so a dead server cannot keep anyone logged in here.
			plain := newClients(server, a.http, nil)
			src := &tokenSource{server: server, store: store, auth: plain.auth, now: a.now, creds: creds}
			_, revokeErr := newClients(server, a.http, src).auth.Logout(cmd.Context(), &berthv1.LogoutRequest{})
			if err := store.update(func(f *credentialsFile) {
				delete(f.Servers, server)
				if f.Current == server {
					f.Current = ""
				}
			}); err != nil {
				return err
			}
			if revokeErr != nil {
				fmt.Fprintf(a.io.Err, "Forgot the tokens for %s, but the server did not revoke the session: %s\n", server, describe(revokeErr))
				return nil
			}
			fmt.Fprintf(a.io.Err, "Logged out of %s.\n", server)
			return nil
		},
	}
}

func (a *app) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Show the account the CLI calls as",
		Example: `  berth whoami -o json | jq -r .user.email`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.auth.GetCurrentUser(cmd.Context(), &berthv1.GetCurrentUserRequest{})
			if err != nil {
				return err
			}
			return a.print(res, func() *table {
				return a.usersTable([]*berthv1.User{res.GetUser()})
			})
		},
	}
}

func (a *app) usersTable(users []*berthv1.User) *table {
	t := &table{header: []string{"ID", "EMAIL", "NAME", "ROLE", "DISABLED", "LAST LOGIN"}}
	now := a.now()
	for _, u := range users {
		t.add(u.GetId(), u.GetEmail(), u.GetName(), enumName(u.GetRole().String(), "ROLE_"), yesNo(u.GetDisabled()), ago(u.GetLastLoginAt(), now))
	}
	return t
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// parseRole reads admin|member|viewer.
func parseRole(s string) (berthv1.Role, error) {
	v, ok := berthv1.Role_value["ROLE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageError{fmt.Errorf("role %q: want admin, member or viewer", s)}
	}
	return berthv1.Role(v), nil
}

func (a *app) keyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, list and revoke API keys",
		Example: `  berth key create ci --role member
  BERTH_TOKEN=<key> berth ws list`,
	}
	var role, expires string
	var manage bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an API key; the key is shown once",
		Long: `Create an API key. The key itself is printed once, on standard output
(with -o table, alone on its line, so $(berth key create ci) captures it);
only its prefix is kept by the server.`,
		Example: `  berth key create ci --role viewer --expires 720h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &berthv1.CreateApiKeyRequest{Name: args[0], ManageKeys: manage}
			if role != "" {
				r, err := parseRole(role)
				if err != nil {
					return err
				}
				req.Role = r
			}
			if expires != "" {
				d, err := time.ParseDuration(expires)
				if err != nil || d <= 0 {
					return usageError{fmt.Errorf("--expires %q: want a positive duration such as 720h", expires)}
				}
				req.ExpiresAt = timestamppb.New(a.now().Add(d))
			}
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.auth.CreateApiKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.output != formatTable {
				return a.print(res, nil)
			}
			fmt.Fprintln(a.io.Out, res.GetKey())
			fmt.Fprintf(a.io.Err, "API key %s (%s) created; it is shown only this once.\n", res.GetApiKey().GetName(), res.GetApiKey().GetId())
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "role of the key: admin, member or viewer (default: yours)")
	create.Flags().StringVar(&expires, "expires", "", "lifetime such as 720h (default: none)")
	create.Flags().BoolVar(&manage, "manage-keys", false, "let the key create and revoke keys itself")

	list := &cobra.Command{
		Use:     "list",
		Short:   "List your API keys",
		Example: `  berth key list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			res, err := c.auth.ListApiKeys(cmd.Context(), &berthv1.ListApiKeysRequest{})
			if err != nil {
				return err
			}
			return a.print(res, func() *table {
				t := &table{header: []string{"ID", "NAME", "PREFIX", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED"}}
				now := a.now()
				for _, k := range res.GetApiKeys() {
					t.add(k.GetId(), k.GetName(), k.GetPrefix(), enumName(k.GetRole().String(), "ROLE_"), ago(k.GetCreatedAt(), now), ago(k.GetLastUsedAt(), now), ago(k.GetExpiresAt(), now), ago(k.GetRevokedAt(), now))
				}
				return t
			})
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an API key",
		Example: `  berth key revoke 0b6c…`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect(true)
			if err != nil {
				return err
			}
			if _, err := c.auth.RevokeApiKey(cmd.Context(), &berthv1.RevokeApiKeyRequest{Id: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(a.io.Err, "API key %s revoked.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
