package testsvc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperEnv makes the test binary, run again by
// TestPostgresDiesWithTheTestBinary, start a cluster, print where it is and
// die without stopping it.
const helperEnv = "BERTH_TESTSVC_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helper()
	}
	os.Exit(m.Run())
}

// helper starts the cluster, prints its port and directory, then kills its
// own process with SIGKILL: no cleanup and no deferred call runs.
func helper() {
	c, err := sharedCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(c.port, c.dir)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// connect opens a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// ownCluster returns the cluster testsvc starts, even when DatabaseURLEnv
// points Postgres elsewhere: the tests that check it call it.
func ownCluster(t *testing.T) *cluster {
	t.Helper()
	c, err := sharedCluster()
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	return c
}

func TestPostgresGivesEachTestItsOwnDatabase(t *testing.T) {
	t.Parallel()
	var names [2]string
	for i := range names {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			conn := connect(t, Postgres(t))
			if err := conn.QueryRow(t.Context(), `SELECT current_database()`).Scan(&names[i]); err != nil {
				t.Fatal(err)
			}
			var tables int
			if err := conn.QueryRow(t.Context(),
				`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("a new database has %d tables", tables)
			}
			if _, err := conn.Exec(t.Context(), `CREATE TABLE t (id INTEGER)`); err != nil {
				t.Fatal(err)
			}
		})
	}
	if names[0] == "" || names[0] == names[1] {
		t.Fatalf("databases %q and %q", names[0], names[1])
	}
	// The subtests have ended, and their databases with them.
	conn := connect(t, Postgres(t))
	for _, name := range names {
		var n int
		if err := conn.QueryRow(t.Context(), `SELECT COUNT(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s outlived its test", name)
		}
	}
}

func TestPostgresSettings(t *testing.T) {
	t.Parallel()
	conn := connect(t, ownCluster(t).url("postgres"))
	var listen, fsync, dataDir string
	if err := conn.QueryRow(t.Context(), `SELECT current_setting('listen_addresses'), current_setting('fsync'),
		current_setting('data_directory')`).Scan(&listen, &fsync, &dataDir); err != nil {
		t.Fatal(err)
	}
	if listen != "127.0.0.1" || fsync != "off" {
		t.Errorf("listen_addresses = %q, fsync = %q; want 127.0.0.1, off", listen, fsync)
	}
	info, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := info.Sys().(*syscall.Stat_t).Uid; uid == 0 {
		t.Errorf("the data directory %s belongs to root: the server runs as root", dataDir)
	}
}

func TestPostgresRefusesOtherURLs(t *testing.T) {
	t.Parallel()
	_, err := withDatabase("mysql://root:hunter2@db/x", "y")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("withDatabase = %v", err)
	}
	got, err := withDatabase("postgres://u:p@h:5/old?sslmode=disable", "new")
	if err != nil || got != "postgres://u:p@h:5/new?sslmode=disable" {
		t.Fatalf("withDatabase = %q, %v", got, err)
	}
	err = redact(fmt.Errorf("password hunter2 refused"), "postgres://u:hunter2@h/db")
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("redact kept the password: %v", err)
	}
}

// A test binary that dies without cleaning up — by SIGKILL here — takes its
// cluster with it: the server stops and its directory is removed.
func TestPostgresDiesWithTheTestBinary(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var port int
	var dir string
	if _, serr := fmt.Sscan(string(out), &port, &dir); serr != nil {
		t.Fatalf("the helper printed %q (%v): %v", out, err, serr)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the helper's cluster directory: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		c, dialErr := net.DialTimeout("tcp", addr, time.Second)
		if dialErr == nil {
			c.Close()
		}
		if dialErr != nil && os.IsNotExist(statErr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the helper died: listening %v, directory %v", dialErr == nil, statErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
