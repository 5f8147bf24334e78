package valkey_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	valkeygo "github.com/valkey-io/valkey-go"

	"github.com/berthhq/berth/internal/testsvc"
	"github.com/berthhq/berth/internal/valkey"
)

// open opens a client on url with a namespace of its own and fast health
// checks, closed when the test ends.
func open(t testing.TB, url string, opts valkey.Options) *valkey.Client {
	t.Helper()
	if opts.Namespace == "" {
		opts.Namespace = "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 50 * time.Millisecond
	}
	c, err := valkey.Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenRejectsBadURLsWithoutThePassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://user:s3cret@127.0.0.1:6379/0",
		"redis://user:s3cret@127.0.0.1:6379/zero",
		"redis://user:s3cret@127.0.0.1:6379/0/1",
		"redis://user:s3cret@127.0.0.1:port/0",
		"redis://user:s3cret@/0",
		"redis://user:s3cret@127.0.0.1:6379/0\x7f",
	} {
		_, err := valkey.Open(t.Context(), u, valkey.Options{})
		if err == nil {
			t.Errorf("%q: no error", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error shows the password: %v", u, err)
		}
	}
}

func TestNilClientIsNotConfigured(t *testing.T) {
	t.Parallel()
	var c *valkey.Client
	if c.Up() || c.Status() != valkey.StatusNotConfigured {
		t.Errorf("nil client: Up %v, Status %q", c.Up(), c.Status())
	}
}

// TestStateFollowsTheServer starts berth's client while the server is down,
// then brings the server up, down and up again: the state, the gauge and
// the hooks follow, and the client reconnects by itself.
func TestStateFollowsTheServer(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	r.Stop()
	reg := prometheus.NewRegistry()
	var losses, recoveries atomic.Int32
	c := open(t, r.URL(), valkey.Options{Registerer: reg})
	c.OnLoss(func() { losses.Add(1) })
	c.OnRecovery(func(context.Context) error { recoveries.Add(1); return nil })

	if c.Up() || c.Status() != valkey.StatusDegraded {
		t.Fatalf("server down: Up %v, Status %q", c.Up(), c.Status())
	}
	up := func() float64 { return value(t, reg, "berth_valkey_up") }
	if up() != 0 {
		t.Error("berth_valkey_up is not 0 while down")
	}

	r.Start()
	if err := c.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.Status() != valkey.StatusOK || up() != 1 || recoveries.Load() != 1 || losses.Load() != 0 {
		t.Errorf("after start: Status %q, gauge %v, recoveries %d, losses %d", c.Status(), up(), recoveries.Load(), losses.Load())
	}

	r.Stop()
	waitFor(t, "the loss hook", func() bool { return losses.Load() == 1 })
	if c.Status() != valkey.StatusDegraded || up() != 0 || losses.Load() != 1 || value(t, reg, "berth_valkey_outages_total") != 1 {
		t.Errorf("after stop: Status %q, gauge %v, losses %d, outages %v", c.Status(), up(), losses.Load(), value(t, reg, "berth_valkey_outages_total"))
	}

	r.Start()
	if err := c.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if recoveries.Load() != 2 || losses.Load() != 1 {
		t.Errorf("after restart: recoveries %d, losses %d", recoveries.Load(), losses.Load())
	}
	if err := c.Valkey().Do(t.Context(), c.Valkey().B().Set().Key(c.Key("k")).Value("v").Build()).Error(); err != nil {
		t.Errorf("command after reconnecting: %v", err)
	}
}

// TestFailingRecoveryHookKeepsDegraded checks that a client is Up only once
// every recovery hook has succeeded, and that hooks registered while Up run
// at once.
func TestFailingRecoveryHookKeepsDegraded(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	c := open(t, r.URL(), valkey.Options{})
	if !c.Up() {
		t.Fatal("Open returned before the server answered")
	}
	var fail atomic.Bool
	fail.Store(true)
	var runs atomic.Int32
	c.OnRecovery(func(context.Context) error {
		runs.Add(1)
		if fail.Load() {
			return context.DeadlineExceeded
		}
		return nil
	})
	if runs.Load() != 1 || c.Up() {
		t.Fatalf("hook registered while Up: runs %d, Up %v (want 1, false)", runs.Load(), c.Up())
	}
	waitFor(t, "another attempt", func() bool { return runs.Load() >= 3 })
	if c.Up() {
		t.Fatal("Up while its recovery hook fails")
	}
	fail.Store(false)
	if err := c.WaitUp(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedisTLS(t)
	untrusted := open(t, r.URL(), valkey.Options{})
	if untrusted.Up() {
		t.Error("Up with a certificate from an authority it was not given")
	}
	c := open(t, r.URL(), valkey.Options{TLSConfig: r.TLSConfig()})
	if !c.Up() {
		t.Fatal("not Up over TLS with the server's authority")
	}
	vk := c.Valkey()
	if err := vk.Do(t.Context(), vk.B().Set().Key(c.Key("k")).Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got, err := vk.DoCache(t.Context(), vk.B().Get().Key(c.Key("k")).Cache(), time.Minute).ToString(); err != nil || got != "v" {
		t.Errorf("cached read over TLS: %q, %v", got, err)
	}
}

func TestDatabaseAndPassword(t *testing.T) {
	t.Parallel()
	r := testsvc.StartRedis(t)
	admin := open(t, r.URL(), valkey.Options{})
	vk := admin.Valkey()
	if err := vk.Do(t.Context(), vk.B().AclSetuser().Username("berth").Rule("on", ">s3cret", "~*", "&*", "+@all").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(strings.TrimPrefix(r.URL(), "redis://"), "/0")

	bad := open(t, "redis://berth:wrong@"+base+"/3", valkey.Options{})
	if bad.Up() {
		t.Error("Up with a wrong password")
	}

	c := open(t, "redis://berth:s3cret@"+base+"/3", valkey.Options{})
	if !c.Up() {
		t.Fatal("not Up with the right password")
	}
	if err := c.Valkey().Do(t.Context(), c.Valkey().B().Set().Key("in-db-3").Value("yes").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	direct, err := valkeygo.NewClient(valkeygo.ClientOption{InitAddress: []string{base}, SelectDB: 3, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if got, err := direct.Do(t.Context(), direct.B().Get().Key("in-db-3").Build()).ToString(); err != nil || got != "yes" {
		t.Errorf("key in database 3: %q, %v", got, err)
	}
}

// value returns the value of the unlabelled gauge or counter name on reg,
// or -1 when reg has none.
func value(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() != name {
				continue
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
