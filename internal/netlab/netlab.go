// Package netlab builds small lab networks for tests that need real nodes: one Linux
// network namespace per simulated host, each with an interface "eth1" on a shared bridge
// in the root namespace. The bridge carries an address of its own, so processes in the
// hosts reach a test apiserver bound to it (design.md §7: the management link).
//
// Every address lives in prefixes the lab creates and tears down; nothing leaves the
// machine. Tests using it need root (internal/privileged.Require).
package netlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// HostInterface is the interface name every host gets, as scenario S2's policy expects.
const HostInterface = "eth1"

// T is what a lab needs of its user: testing.TB satisfies it, and so can a program
// (the demo) that is not a test.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

var seq atomic.Uint32

// Lab is a bridge with hosts attached.
type Lab struct {
	t      T
	id     string
	Bridge string
	// Mgmt is the bridge's own address: bind servers the hosts must reach to it.
	Mgmt   netip.Prefix
	Mgmt6  netip.Prefix
	hosts  []*Host
	next   int
	prefix netip.Prefix
	v6     netip.Prefix
}

// Host is one network namespace attached to the lab's bridge.
type Host struct {
	Name string // also the network namespace name
	IPv4 netip.Prefix
	IPv6 netip.Prefix
	MAC  net.HardwareAddr
	lab  *Lab
}

// New builds a bridge with address .1 of v4 (a /24) and ::1 of v6 (a /64); the lab is
// removed when the test ends.
func New(t T, v4, v6 netip.Prefix) *Lab {
	t.Helper()
	return NewWithID(t, fmt.Sprintf("%d%d", os.Getpid()%10000, seq.Add(1)), v4, v6)
}

// NewWithID is New with the id every name of the lab carries (namespaces pt<id>-<role>,
// bridge ptbr<id>, links ptv<id>-<n>) chosen by the caller, so that a program which may
// die without cleaning up (the demo) can find what it left: see RemoveLeftovers. The id
// must be short: interface names are limited to 15 bytes.
func NewWithID(t T, id string, v4, v6 netip.Prefix) *Lab {
	t.Helper()
	l := &Lab{t: t, id: id, Bridge: "ptbr" + id, prefix: v4, v6: v6, next: 10}
	l.Mgmt = netip.PrefixFrom(v4.Addr().Next(), v4.Bits())
	l.Mgmt6 = netip.PrefixFrom(v6.Addr().Next(), v6.Bits())
	if owner := addressOwner(l.Mgmt.Addr()); owner != "" {
		// Two bridges with one address make the hosts' replies go to either: every test
		// would time out far from the cause.
		t.Fatalf("%s is already on %s, most likely a lab left by a killed test run: remove it with `ip link del %s` (and its namespaces, `ip netns list`)",
			l.Mgmt.Addr(), owner, owner)
	}
	t.Cleanup(l.teardown)
	// Without an MLD querier a snooping bridge forwards solicited-node multicast (and so
	// NDP) depending on timing; hosts on a lab should see each other deterministically.
	l.must("ip", "link", "add", l.Bridge, "type", "bridge", "mcast_snooping", "0")
	l.must("ip", "addr", "add", l.Mgmt.String(), "dev", l.Bridge)
	l.must("ip", "-6", "addr", "add", l.Mgmt6.String(), "dev", l.Bridge, "nodad")
	l.must("ip", "link", "set", l.Bridge, "up")
	return l
}

// addressOwner is the name of the host interface that has a, or "".
func addressOwner(a netip.Addr) string {
	ifs, _ := net.Interfaces()
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, ad := range addrs {
			if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr() == a {
				return ifi.Name
			}
		}
	}
	return ""
}

// Interface is one of a host's interfaces on the lab's bridge.
type Interface struct {
	Name string
	IPv4 netip.Prefix
	IPv6 netip.Prefix
	MAC  net.HardwareAddr
}

// AddHost creates a namespace with lo up and eth1 on the bridge, addressed with the next
// free host number in both prefixes.
func (l *Lab) AddHost(role string) *Host {
	l.t.Helper()
	h := &Host{Name: fmt.Sprintf("pt%s-%s", l.id, role), lab: l}
	l.must("ip", "netns", "add", h.Name)
	l.hosts = append(l.hosts, h)
	// Set before any interface exists so link-local addresses skip DAD too: a tentative
	// address makes a host's first second of IPv6 fail for reasons no test is about.
	err := h.Do(func() error {
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("disable DAD in %s: %v", h.Name, err)
	}
	h.MustRun("ip", "link", "set", "lo", "up")
	ifi := l.AddInterface(h, HostInterface)
	h.IPv4, h.IPv6, h.MAC = ifi.IPv4, ifi.IPv6, ifi.MAC
	return h
}

// AddInterface plugs another interface of h, named ifname, into the bridge, addressed
// with the next free host number in both prefixes. Deleting it inside the host (ip link
// del) removes the bridge port as well.
func (l *Lab) AddInterface(h *Host, ifname string) Interface {
	l.t.Helper()
	n := l.next
	l.next++
	ifi := Interface{
		Name: ifname,
		IPv4: netip.PrefixFrom(nth(l.prefix.Addr(), n), l.prefix.Bits()),
		IPv6: netip.PrefixFrom(nth(l.v6.Addr(), n), l.v6.Bits()),
	}
	peer := fmt.Sprintf("ptv%s-%d", l.id, n)
	l.must("ip", "link", "add", peer, "type", "veth", "peer", "name", ifname, "netns", h.Name)
	l.must("ip", "link", "set", peer, "master", l.Bridge, "up")
	h.MustRun("ip", "addr", "add", ifi.IPv4.String(), "dev", ifname)
	h.MustRun("ip", "-6", "addr", "add", ifi.IPv6.String(), "dev", ifname, "nodad")
	h.MustRun("ip", "link", "set", ifname, "up")
	mac, err := net.ParseMAC(strings.TrimSpace(h.MustRun("cat", "/sys/class/net/"+ifname+"/address")))
	if err != nil {
		l.t.Fatal(err)
	}
	ifi.MAC = mac
	return ifi
}

// Command returns a command that runs in the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Run runs a command in the host's namespace and returns its output.
func (h *Host) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := h.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.Name, err, stderr.String())
	}
	return out.String(), nil
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(name string, args ...string) string {
	h.lab.t.Helper()
	out, err := h.Run(name, args...)
	if err != nil {
		h.lab.t.Fatal(err)
	}
	return out
}

func (l *Lab) must(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func (l *Lab) teardown() {
	for _, h := range l.hosts {
		_ = exec.Command("ip", "netns", "del", h.Name).Run() // removes the namespace's veth end and so its peer
	}
	_ = exec.Command("ip", "link", "del", l.Bridge).Run()
}

// RemoveLeftovers deletes the namespaces and the bridge of the lab with id, whether or
// not a Lab of this process made them, and returns what it removed.
func RemoveLeftovers(id string) []string {
	var removed []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "pt"+id+"-") && exec.Command("ip", "netns", "del", f[0]).Run() == nil {
			removed = append(removed, "netns "+f[0])
		}
	}
	if exec.Command("ip", "link", "del", "ptbr"+id).Run() == nil {
		removed = append(removed, "link ptbr"+id)
	}
	return removed
}

// Hosts are the lab's hosts in the order they were added.
func (l *Lab) Hosts() []*Host { return l.hosts }

func nth(base netip.Addr, n int) netip.Addr {
	a := base
	for range n {
		a = a.Next()
	}
	return a
}
