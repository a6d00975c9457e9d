package l2member

import (
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/portico-dev/portico/internal/l2quorum"
)

func start(t *testing.T, name string, controller bool) *Member {
	t.Helper()
	m, err := Start(Config{Name: name, Controller: controller, Bind: "127.0.0.1:0", Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	return m
}

func stateOf(m *Member, name string) (l2quorum.Member, bool) {
	for _, x := range m.Members() {
		if x.Name == name {
			return x, true
		}
	}
	return l2quorum.Member{}, false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Real memberlist members on loopback: the roster keeps dead members (a quorum counts
// them), marks graceful leaves, and carries metadata.
func TestRosterTracksDeathLeaveAndMeta(t *testing.T) {
	a, b, c := start(t, "a", false), start(t, "b", false), start(t, "ctrl", true)
	d := start(t, "d", false)
	for _, m := range []*Member{b, c, d} {
		if _, err := m.Join([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "everyone to see everyone", func() bool { return len(a.Members()) == 4 && len(c.Members()) == 4 })
	if x, _ := stateOf(a, "ctrl"); !x.Controller {
		t.Error("the controller's metadata did not arrive")
	}
	if err := b.SetMeta(Meta{Ready: true, Applied: true, Hash: 42}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's metadata to reach the controller", func() bool {
		x, _ := stateOf(c, "b")
		return x.Ready && x.Applied && x.Hash == 42
	})
	d.Leave(time.Second)
	eventually(t, "d to have left", func() bool { x, _ := stateOf(c, "d"); return x.State == l2quorum.Left })
	start := time.Now()
	b.Shutdown() // no goodbye: a crash
	eventually(t, "b to be declared dead", func() bool { x, _ := stateOf(c, "b"); return x.State == l2quorum.Dead })
	t.Logf("crash declared dead after %v", time.Since(start).Round(time.Millisecond))
	if x, ok := stateOf(a, "b"); !ok || x.State != l2quorum.Dead {
		t.Errorf("a's roster: %+v", x)
	}
	if _, err := a.Ping("ctrl"); err != nil {
		t.Errorf("ping: %v", err)
	}
	if _, err := a.Ping("b"); err == nil {
		t.Error("a dead member answered a ping")
	}
}
