// Command berth is the berth API server and its terminal client.
//
//	berth serve        run the server (berth serve --help lists every flag)
//	berth migrate      apply database migrations and exit
//	berth healthcheck  exit 0 when the server at --addr answers /ready
//	berth version      print the version
//	berth login, ws, task, key, admin, stats …  the client (internal/cli;
//	                   berth --help lists them)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/config"
	"github.com/berthhq/berth/internal/server"
	"github.com/berthhq/berth/internal/store"
	"github.com/berthhq/berth/internal/telemetry"
	"github.com/berthhq/berth/internal/version"
)

const usage = `usage: berth <command> [flags]

commands:
  serve        run the server (berth serve --help lists every flag)
  migrate      apply database migrations to the store (--database-url, else --data-dir) and exit
  healthcheck  exit 0 when the server at --addr answers /ready
  version      print the version

client commands (berth --help lists them all):
  login, logout, whoami, workspace (ws), task, key, admin, stats, completion
`

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run runs the command in args with the environment environ (as from
// os.Environ: the OIDC providers are found by listing it).
func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	// The server's commands are dispatched here, before the client's
	// command tree, so their flag parsing and output stay exactly as they
	// were; everything else is the client (internal/cli), which lists
	// these four in berth --help and hands them back through serverCommands.
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(rest, environ, stderr)
	case "migrate":
		err = migrate(rest, environ, stdout, stderr)
	case "healthcheck":
		err = healthcheck(rest, environ, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "berth", version.Version)
	default:
		return cli.Run(context.Background(), args, environ, cli.IO{In: os.Stdin, Out: stdout, Err: stderr}, serverCommands(environ, stdout, stderr))
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, "berth:", err)
		return 1
	}
}

// serverCommands are the server's own commands as the client's help lists
// them; running one goes back through run.
func serverCommands(environ []string, stdout, stderr io.Writer) []cli.ServerCommand {
	again := func(name string) func([]string) int {
		return func(args []string) int { return run(append([]string{name}, args...), environ, stdout, stderr) }
	}
	return []cli.ServerCommand{
		{Name: "serve", Short: "Run the server (berth serve --help lists every flag)", Run: again("serve")},
		{Name: "migrate", Short: "Apply database migrations to the store and exit", Run: again("migrate")},
		{Name: "healthcheck", Short: "Exit 0 when the server at --addr answers /ready", Run: again("healthcheck")},
		{Name: "version", Short: "Print the version", Run: again("version")},
	}
}

func serve(args, environ []string, stderr io.Writer) error {
	cfg, err := config.LoadEnv(args, environ, stderr)
	if err != nil {
		return err
	}
	// Log lines leave through their own goroutine: a slow stderr must not
	// hold up requests (see telemetry.LogWriter). Closed last, after the
	// server, so that every line is out before serve returns.
	logs := telemetry.NewLogWriter(stderr, 1<<20)
	defer logs.Close()
	logger, err := telemetry.NewLogger(logs, string(cfg.LogFormat), cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := server.New(ctx, cfg, logger, telemetry.NewRegistry(), time.Now)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on --addr %s: %w", cfg.Addr, err)
	}
	var adminLn net.Listener
	if cfg.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			_ = ln.Close() // the listen error is the one to report
			return fmt.Errorf("listen on --admin-addr %s: %w", cfg.AdminAddr, err)
		}
		logger.Info("admin listener", "addr", adminLn.Addr().String())
	}
	logger.Info("starting berth", "version", version.Version, "config", cfg)
	return srv.Serve(ctx, ln, adminLn)
}

func migrate(args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := config.LoadEnv(args, environ, stderr)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := store.OpenURL(ctx, cfg.Database.URL.Reveal(), filepath.Join(cfg.DataDir, "berth.db"), int(cfg.Database.MaxConns))
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store %s is at schema version %d\n", filepath.Join(cfg.DataDir, "berth.db"), v)
	return nil
}

func healthcheck(args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := ""
	for _, kv := range environ { // the last BERTH_ADDR wins, as in config.LoadEnv
		if v, ok := strings.CutPrefix(kv, "BERTH_ADDR="); ok {
			def = v
		}
	}
	if def == "" {
		def = config.Flags().Lookup("addr").DefValue // berth serve's default
	}
	addr := fs.String("addr", def, "address of the server to check (env BERTH_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for an answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", *addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // a server listening on all addresses answers on loopback
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/ready")
	if err != nil {
		return fmt.Errorf("not healthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s: %s", resp.Status, body)
	}
	return nil
}
