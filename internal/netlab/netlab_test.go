package netlab_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/internal/testenv"
)

// Hosts reach each other over the bridge, and a test apiserver bound to the management
// address answers kubectl run inside a host, as a node agent will.
func TestHostsReachEachOtherAndTheAPIServer(t *testing.T) {
	privileged.Require(t)
	lab := netlab.New(t, netip.MustParsePrefix("10.251.0.0/24"), netip.MustParsePrefix("fd00:251::/64"))
	a, b := lab.AddHost("a"), lab.AddHost("b")
	if a.MAC.String() == b.MAC.String() {
		t.Fatal("hosts share a MAC")
	}
	a.MustRun("ping", "-c", "1", "-W", "2", b.IPv4.Addr().String())
	a.MustRun("ping", "-6", "-c", "1", "-W", "2", b.IPv6.Addr().String())

	env, err := testenv.Start(testenv.Options{ListenHost: lab.Mgmt.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	if !strings.Contains(env.Config.Host, lab.Mgmt.Addr().String()) {
		t.Fatalf("apiserver at %s, want it on %s", env.Config.Host, lab.Mgmt.Addr())
	}
	out, err := b.Run("kubectl", "--kubeconfig", env.Kubeconfig, "get", "namespace", "default", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "namespace/default" {
		t.Fatalf("kubectl from host b: %q %v", out, err)
	}
}
