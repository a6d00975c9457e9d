//go:build linux

package bpf

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TestListenerMap covers what the sock_ops program puts in the listeners map and what
// the redirect does without it: a listener that predates Attach is found by the socket
// lookup, a loopback listener of another network namespace never enters the map, one of
// the datapath's namespace does and leaves it when closed, and Remove leaves nothing
// attached to the cgroup.
func TestListenerMap(t *testing.T) {
	top := newTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	early := serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	top.attach(t, d)
	checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)

	inMap := func(port uint16) bool {
		t.Helper()
		var cookie uint64
		err := d.objs.Listeners.Lookup(uint32(port), &cookie)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false
		}
		if err != nil {
			t.Fatalf("look up listener slot %d: %v", port, err)
		}
		return true
	}
	if inMap(proxyPort) {
		t.Fatal("a listener started before Attach is in the listeners map")
	}
	c, err := top.client.Dial(netip.AddrPortFrom(vipV4, vipPort), 2*time.Second)
	if err != nil {
		t.Fatalf("dial through the lookup fallback: %v", err)
	}
	if err := roundTrip(c, "fallback"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-early.locals
	if st, _ := d.Stats(); st.Hits != 1 || st.ListenerMapHits != 0 {
		t.Fatalf("want one hit by socket lookup, got %+v", st)
	}

	other := listenTransparent(t, top.client, netip.MustParseAddrPort("127.0.0.1:15002"))
	if inMap(15002) {
		t.Fatal("a listener of another network namespace is in the listeners map")
	}
	other.Close()

	late := listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15003"))
	if !inMap(15003) {
		t.Fatal("a loopback listener started after Attach is not in the listeners map")
	}
	wild := listenTransparent(t, top.node, netip.MustParseAddrPort("0.0.0.0:15004"))
	if inMap(15004) {
		t.Fatal("a wildcard listener is in the listeners map")
	}
	wild.Close()
	late.Close()
	if inMap(15003) {
		t.Fatal("a closed listener is still in the listeners map")
	}

	prog, err := d.objs.PorticoListeners.Info()
	if err != nil {
		t.Fatal(err)
	}
	progID, _ := prog.ID()
	if n := sockopsLinks(t, progID); n != 1 {
		t.Fatalf("%d sock_ops links run the program after Attach, want 1", n)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if n := sockopsLinks(t, progID); n != 0 {
		t.Fatalf("%d sock_ops links still run the program after Remove", n)
	}
}

// sockopsLinks counts the cgroup links that run program id.
func sockopsLinks(t *testing.T, id ebpf.ProgramID) int {
	t.Helper()
	var n int
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		l.Close()
		if err != nil {
			continue
		}
		if info.Type == link.CgroupType && info.Program == id {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestListenerMapOtherNamespace: the map holds the listeners of the namespace the
// datapath was last attached from; a packet in another namespace whose slot holds such
// a socket (bpf_sk_assign refuses it) must still reach its own namespace's listener.
func TestListenerMapOtherNamespace(t *testing.T) {
	top := newTopology(t)
	d := openTest(t, mountBPFFS(t), Options{})
	top.attach(t, d)
	// From now on the client namespace's listeners are recorded, not the node's.
	if err := top.client.Do(d.attachSockops); err != nil {
		t.Fatal(err)
	}
	listenTransparent(t, top.client, netip.MustParseAddrPort("127.0.0.1:15001"))
	var cookie uint64
	if err := d.objs.Listeners.Lookup(uint32(proxyPort), &cookie); err != nil {
		t.Fatalf("the client namespace's listener is not in the map: %v", err)
	}
	srv := serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)

	c, err := top.client.Dial(netip.AddrPortFrom(vipV4, vipPort), 2*time.Second)
	if err != nil {
		st, _ := d.Stats()
		t.Fatalf("dial: %v (stats %+v)", err, st)
	}
	defer c.Close()
	if err := roundTrip(c, "own namespace"); err != nil {
		t.Fatal(err)
	}
	<-srv.locals
	if st, _ := d.Stats(); st.Hits != 1 || st.ListenerMapHits != 0 || st.AssignFailures != 0 {
		t.Fatalf("want one hit by socket lookup after the map's socket was refused, got %+v", st)
	}
}
