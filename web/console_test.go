package web_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testsvc"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// chromium is the Debian package's browser, which playwright-core drives
// (no browser download: the test uses the machine's).
const chromium = "/usr/bin/chromium"

// need fails the test under CI (where .ci/run installs node, chromium and
// web's npm packages, so a missing one is a broken machine) and skips it
// elsewhere.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing; CI must have it (see .ci/run)", what)
	}
	t.Skipf("%s is missing: the browser tests need it (CI fails instead of skipping)", what)
}

// TestConsoleInBrowser drives the real console in a real Chromium
// (tests/console.mjs, through playwright-core) against a real berth built
// from this tree: the process runtime, the stand-in claude, its own data
// directory, and zitadel's example OpenID provider for the OIDC sign-in.
// The script starts, stops and restarts berth itself (the restart flow);
// this test builds the binaries, starts the provider, and runs node.
func TestConsoleInBrowser(t *testing.T) {
	node, err := exec.LookPath("node")
	need(t, err == nil, "node")
	_, err = os.Stat(chromium)
	need(t, err == nil, chromium)
	_, err = os.Stat(filepath.Join("node_modules", "playwright-core", "package.json"))
	need(t, err == nil, "web/node_modules (npm ci --prefix web)")

	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(15 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline.Add(-30*time.Second))
	defer cancel()

	bin := t.TempDir()
	build := func(out, pkg string, env ...string) {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	build("berth", "./cmd/berth")
	claude := testsvc.FakeClaude(t)

	// berth's port is chosen here, as the provider must know the redirect
	// URI before berth starts; the script starts berth on it (and again on
	// it after the restart, so the open pages reconnect to the same origin).
	port := freePort(t)
	berthURL := "http://127.0.0.1:" + strconv.Itoa(port)
	issuer := startProvider(t, berthURL+"/auth/oidc/example/callback")

	// The screenshots go to docs/screenshots (committed, shown by the
	// README) only when asked (just screenshots): a plain test run leaves
	// the tree as it was.
	shots := t.TempDir()
	if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		if shots, err = filepath.Abs(filepath.Join("..", "docs", "screenshots")); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, node, filepath.Join("tests", "console.mjs"))
	cmd.Env = append(os.Environ(),
		"BERTH_BIN="+filepath.Join(bin, "berth"),
		"CLAUDE_BIN="+claude,
		"CHROMIUM="+chromium,
		"BERTH_PORT="+strconv.Itoa(port),
		"DATA_DIR="+t.TempDir(),
		"SCREENSHOTS="+shots,
		"DEADLINE_MS="+strconv.FormatInt(deadline.Add(-45*time.Second).UnixMilli(), 10),
		"OIDC_ISSUER="+issuer,
	)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	lines.Buffer(make([]byte, 64*1024), 1024*1024)
	for lines.Scan() {
		t.Log(lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tests/console.mjs: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// startProvider serves zitadel's example OpenID provider (its in-memory
// users: test-user2 / verysecure among them) on 127.0.0.1 with berth
// registered as a client, and returns its issuer URL.
func startProvider(t *testing.T, redirectURI string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	clients := map[string]*storage.Client{"berth-console": storage.WebClient("berth-console", "console-secret", redirectURI)}
	store := storage.NewStorageWithClients(storage.NewUserStore(issuer), clients)
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, store, nil, false), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return issuer
}
