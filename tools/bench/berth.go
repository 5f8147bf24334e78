package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// berthProcess is `berth serve` running as a child on 127.0.0.1.
type berthProcess struct {
	*child
	dir       string
	url       string
	adminURL  string
	logFile   string
	token     string
	workspace string
}

// buildBerth builds ./cmd/berth into dir and returns the binary's path.
func buildBerth(ctx context.Context, dir string, log io.Writer) (string, error) {
	bin := filepath.Join(dir, "berth")
	fmt.Fprintln(log, "bench: building ./cmd/berth")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/berth") // #nosec G204 -- fixed arguments; bin is in our temporary directory
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/berth (run from the repository's root, or give -berth): %w\n%s", err, out)
	}
	return bin, nil
}

// berthFlags are the settings berth runs with beside its defaults. The
// harness measures the server, not its limiters: no rate limits, no
// per-user stream, task or queue quota (the default of 64 streams a user
// would refuse the fan-out's 1,000 subscribers), room for the fan-out's
// tasks to run at once, and a connection cap (streams may hold ¾ of it)
// above the streams opened. The agent is this program (see agent.go); its
// idle task must outlive the run, so the watchdog and the time limit are
// an hour. The admin listener serves -profile's profiles.
func berthFlags(addr, adminAddr, data, claude string, streams int) []string {
	return []string{"serve",
		"--addr", addr, "--admin-addr", adminAddr, "--data-dir", data,
		"--runtime", "process", "--secure-cookies=false",
		"--rate-principal", "0", "--rate-anonymous", "0", "--rate-auth-failures", "0",
		"--rate-task-create", "0", "--rate-ws-command", "0",
		"--max-streams-per-user", "0", "--max-running-per-user", "0", "--max-queued-per-user", "0",
		"--max-connections", strconv.Itoa(streams*4/3 + 2048),
		"--max-running-tasks", "32", "--max-running-per-workspace", "32",
		"--claude-path", claude, "--claude-idle-timeout", "1h", "--task-timeout", "1h",
		"--workspace-idle-timeout", "0", "--shutdown-timeout", "5s"}
}

// startBerth starts bin with its data in dir and waits until it is ready.
func startBerth(ctx context.Context, bin, dir string, streams int) (*berthProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "workspaces", "bench"), 0o700); err != nil {
		return nil, err
	}
	logFile := filepath.Join(dir, "berth.log")
	f, err := os.Create(logFile) // #nosec G304 -- in our temporary directory
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, berthFlags(addr, adminAddr, data, self, streams)...) // #nosec G204 -- the berth binary built above or named by the developer
	// The defaults are what is measured: no BERTH_ settings and no
	// runtime tuning from the developer's environment.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "BERTH_") && !slices.Contains([]string{"GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS"}, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = f, f
	c, err := startChild(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting berth: %w", err)
	}
	b := &berthProcess{child: c, dir: dir, url: "http://" + addr, adminURL: "http://" + adminAddr, logFile: logFile}
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := callClient.Get(b.url + "/ready") // #nosec G107 -- our child on 127.0.0.1
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return b, nil
			}
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("berth exited:\n%s", b.logTail())
		case <-ctx.Done():
			b.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, fmt.Errorf("berth not ready in a minute: %v\n%s", err, b.logTail())
		}
	}
}

// stop shuts berth down as an orchestrator would (SIGTERM, then SIGKILL).
func (b *berthProcess) stop() { b.child.stop(10 * time.Second) }

// logTail is the end of berth's log, for errors.
func (b *berthProcess) logTail() string {
	out, _ := os.ReadFile(b.logFile)
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	return string(out)
}

// setUp registers a user and creates the workspace the tasks run in.
func (b *berthProcess) setUp(ctx context.Context) error {
	var reg struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	if err := b.post(ctx, "AuthService/Register", "", `{"email":"bench@example.com","password":"correct horse battery","name":"Bench"}`, &reg); err != nil {
		return err
	}
	b.token = reg.Tokens.AccessToken
	var ws struct {
		Workspace struct {
			ID string `json:"id"`
		} `json:"workspace"`
	}
	path, err := json.Marshal(filepath.Join(b.dir, "data", "workspaces", "bench"))
	if err != nil {
		return err
	}
	if err := b.post(ctx, "WorkspaceService/CreateWorkspace", b.token, `{"name":"bench","path":`+string(path)+`}`, &ws); err != nil {
		return err
	}
	b.workspace = ws.Workspace.ID
	return nil
}

// getWorkspace calls GetWorkspace once: it returns that call and berth's
// answer (headers but Date and Content-Length, and body), which the unary
// floor serves.
func (b *berthProcess) getWorkspace(ctx context.Context) (get call, header http.Header, answer []byte, err error) {
	get = call{url: b.url + "/berth.v1.WorkspaceService/GetWorkspace", token: b.token, body: []byte(`{"id":"` + b.workspace + `"}`)}
	client := loadClient(1)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, get.url, bytes.NewReader(get.body))
	if err != nil {
		return call{}, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.token)
	res, err := client.Do(req)
	if err != nil {
		return call{}, nil, nil, err
	}
	defer res.Body.Close()
	answer, err = io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("GetWorkspace: status %d: %s", res.StatusCode, answer)
	}
	header = res.Header.Clone()
	header.Del("Date")
	header.Del("Content-Length")
	return get, header, answer, err
}

// post calls a berth.v1 procedure with a Connect JSON body and decodes
// the answer into out.
func (b *berthProcess) post(ctx context.Context, procedure, token, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/berth.v1."+procedure, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := callClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", procedure, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", procedure, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d: %s", procedure, res.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// callClient makes the harness's own calls to berth (setting up, creating
// and polling tasks): a berth that hangs fails the run instead of holding
// it.
var callClient = &http.Client{Timeout: time.Minute}

// freeAddr returns a 127.0.0.1 address nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
