//go:build linux

package bpf

import (
	"maps"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/portico-dev/portico/internal/privileged"
)

func k4(addr string, port uint16) Key {
	return Key{Addr: netip.MustParseAddr(addr), Port: port, Proto: ProtoTCP}
}

func openTest(t *testing.T, pinPath string, opts Options) *Datapath {
	t.Helper()
	d, err := Open(pinPath, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func checkSync(t *testing.T, d *Datapath, desired map[Key]uint16, wantAdd, wantUpd, wantDel int) {
	t.Helper()
	a, u, r, err := d.Sync(desired)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if a != wantAdd || u != wantUpd || r != wantDel {
		t.Fatalf("Sync = added %d, updated %d, removed %d; want %d, %d, %d", a, u, r, wantAdd, wantUpd, wantDel)
	}
	got, err := d.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, desired) {
		t.Fatalf("Entries = %v, want %v", got, desired)
	}
}

func TestSyncAppliesDiff(t *testing.T) {
	privileged.Require(t)
	d := openTest(t, mountBPFFS(t), Options{MaxEntries: 16})

	v6 := Key{Addr: netip.MustParseAddr("fd00::1"), Port: 443, Proto: ProtoTCP}
	first := map[Key]uint16{k4("10.0.0.1", 80): 15001, k4("10.0.0.2", 80): 15001, v6: 15002}
	checkSync(t, d, first, 3, 0, 0)
	checkSync(t, d, first, 0, 0, 0)

	second := map[Key]uint16{
		k4("10.0.0.1", 80): 15001, // unchanged
		k4("10.0.0.2", 80): 15009, // new proxy port
		k4("10.0.0.3", 80): 15001, // new
		// v6 removed
	}
	checkSync(t, d, second, 1, 1, 1)
	checkSync(t, d, map[Key]uint16{}, 0, 0, 3)

	// A v4-mapped address is the same frontend as the plain IPv4 one.
	mapped := Key{Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 80, Proto: ProtoTCP}
	if a, _, _, err := d.Sync(map[Key]uint16{mapped: 1}); err != nil || a != 1 {
		t.Fatalf("Sync(v4-mapped) = %d, %v", a, err)
	}
	got, _ := d.Entries()
	if _, ok := got[k4("10.0.0.1", 80)]; !ok {
		t.Fatalf("v4-mapped key not stored as IPv4: %v", got)
	}

	for name, bad := range map[string]map[Key]uint16{
		"zero addr":  {{Port: 80, Proto: ProtoTCP}: 1},
		"zero port":  {k4("10.0.0.1", 0): 1},
		"bad proto":  {{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Proto: 1}: 1},
		"zero proxy": {k4("10.0.0.1", 80): 0},
	} {
		if _, _, _, err := d.Sync(bad); err == nil {
			t.Errorf("%s: Sync accepted %v", name, bad)
		}
	}
	tooMany := map[Key]uint16{}
	for i := range 17 {
		tooMany[k4("10.1.0.1", uint16(1000+i))] = 1
	}
	if _, _, _, err := d.Sync(tooMany); err == nil {
		t.Error("Sync accepted more entries than the map holds")
	}
}

func TestOpenAdoptsMapSize(t *testing.T) {
	privileged.Require(t)
	pin := mountBPFFS(t)
	d := openTest(t, pin, Options{MaxEntries: 100_000})
	if _, _, _, err := d.Sync(map[Key]uint16{k4("10.0.0.1", 80): 1}); err != nil {
		t.Fatal(err)
	}
	d.Close()

	again := openTest(t, pin, Options{})
	if got := again.MaxEntries(); got != 100_000 {
		t.Fatalf("adopted MaxEntries = %d, want 100000", got)
	}
	if got, _ := again.Entries(); len(got) != 1 {
		t.Fatalf("adopted entries = %v", got)
	}
	if _, err := Open(pin, Options{MaxEntries: 10}); err == nil {
		t.Fatal("Open with a different size than the pinned map succeeded")
	}
	if err := again.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Fatalf("pin path still present after Remove: %v", err)
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		name string
		vip  netip.Addr
		lo   netip.Addr
	}{
		{"IPv4", vipV4, netip.MustParseAddr("127.0.0.1")},
		{"IPv6", vipV6, netip.IPv6Loopback()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := newTopology(t)
			d := openTest(t, mountBPFFS(t), Options{})
			top.attach(t, d)
			srv := serveEcho(t, listenTransparent(t, top.node, netip.AddrPortFrom(tc.lo, proxyPort)))
			vip := netip.AddrPortFrom(tc.vip, vipPort)
			key := Key{Addr: tc.vip, Port: vipPort, Proto: ProtoTCP}
			checkSync(t, d, map[Key]uint16{key: proxyPort}, 1, 0, 0)

			c, err := top.client.Dial(vip, 2*time.Second)
			if err != nil {
				t.Fatalf("dial %s through redirect: %v", vip, err)
			}
			defer c.Close()
			if err := roundTrip(c, "hello through the redirect"); err != nil {
				t.Fatal(err)
			}
			if local := <-srv.locals; local.String() != vip.String() {
				t.Fatalf("accepted socket local address %s, want %s", local, vip)
			}
			st, err := d.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("stats after one connection: %+v", st)
			if st.Hits == 0 || st.Established == 0 {
				t.Fatalf("expected hits and established assignments, got %+v", st)
			}
			// The listener started after Attach, so the SYN took it from the map.
			if st.ListenerMapHits == 0 {
				t.Fatalf("expected the listener to come from the listeners map, got %+v", st)
			}

			checkSync(t, d, map[Key]uint16{}, 0, 0, 1)
			start := time.Now()
			if c2, err := top.client.Dial(vip, time.Second); err == nil {
				c2.Close()
				t.Fatal("new connection succeeded after the redirect was removed")
			} else {
				t.Logf("new connection after removal failed as expected in %v: %v", time.Since(start).Round(time.Millisecond), err)
			}
		})
	}
}

// TestAdoption is the agent restart: the process closes its handles, the pinned program
// keeps serving, and a new process adopts the map and applies only the difference.
func TestAdoption(t *testing.T) {
	top := newTopology(t)
	pin := mountBPFFS(t)
	serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("[::1]:15001")))
	vip4 := netip.AddrPortFrom(vipV4, vipPort)
	key4 := Key{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}
	key6 := Key{Addr: vipV6, Port: vipPort, Proto: ProtoTCP}
	first := map[Key]uint16{key4: proxyPort, key6: proxyPort}

	d1, err := Open(pin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	top.attach(t, d1)
	checkSync(t, d1, first, 2, 0, 0)
	linkID := pinnedProgramID(t, pin)

	est, err := top.client.Dial(vip4, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	if err := roundTrip(est, "before restart"); err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	// Agent is down: the existing connection and new ones still go through.
	if err := roundTrip(est, "while the agent is down"); err != nil {
		t.Fatalf("established connection broke after Close: %v", err)
	}
	fresh, err := top.client.Dial(vip4, 2*time.Second)
	if err != nil {
		t.Fatalf("new connection failed while the agent is down: %v", err)
	}
	if err := roundTrip(fresh, "new while down"); err != nil {
		t.Fatal(err)
	}
	fresh.Close()

	d2 := openTest(t, pin, Options{})
	got, err := d2.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, first) {
		t.Fatalf("adopted entries %v, want %v", got, first)
	}
	// Re-attaching with an identical program is a no-op: the link keeps its program.
	top.attach(t, d2)
	if id := pinnedProgramID(t, pin); id != linkID {
		t.Fatalf("re-attach replaced program %d with %d", linkID, id)
	}
	second := map[Key]uint16{key4: proxyPort, {Addr: vipV4, Port: 443, Proto: ProtoTCP}: proxyPort}
	checkSync(t, d2, second, 1, 0, 1)
	if err := roundTrip(est, "after restart"); err != nil {
		t.Fatalf("established connection broke after adoption: %v", err)
	}
	c443, err := top.client.Dial(netip.AddrPortFrom(vipV4, 443), 2*time.Second)
	if err != nil {
		t.Fatalf("entry added after adoption is not served: %v", err)
	}
	c443.Close()
	st, _ := d2.Stats()
	t.Logf("stats across the restart: %+v", st)

	// Uninstall detaches the program: new connections no longer reach the proxy.
	if err := top.node.Do(d2.Remove); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if c, err := top.client.Dial(vip4, time.Second); err == nil {
		c.Close()
		t.Fatal("new connection succeeded after Remove")
	}
}

func pinnedProgramID(t *testing.T, pin string) uint32 {
	t.Helper()
	l, err := link.LoadPinnedLink(pin+"/"+linksDir+"/"+nodeIf, nil)
	if err != nil {
		t.Fatalf("pinned link: %v", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(info.Program)
}

// TestAttachDetach covers both attachment kinds (legacy clsact + cls_bpf is what kernels
// without TCX get): attaching twice leaves one attachment, Detach stops the redirect.
func TestAttachDetach(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{{"tcx", Options{}}, {"legacy-tc", Options{DisableTCX: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			top := newTopology(t)
			d := openTest(t, mountBPFFS(t), tc.opts)
			top.attach(t, d)
			top.attach(t, d)
			serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
			checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)
			if n := attachments(t, top, tc.opts.DisableTCX); n != 1 {
				t.Fatalf("%d attachments after attaching twice, want 1", n)
			}
			vip := netip.AddrPortFrom(vipV4, vipPort)
			c, err := top.client.Dial(vip, 2*time.Second)
			if err != nil {
				t.Fatalf("dial through redirect: %v", err)
			}
			defer c.Close()
			if err := roundTrip(c, tc.name); err != nil {
				t.Fatal(err)
			}
			if err := top.node.Do(func() error { return d.Detach(nodeIf) }); err != nil {
				t.Fatal(err)
			}
			if n := attachments(t, top, tc.opts.DisableTCX); n != 0 {
				t.Fatalf("%d attachments after Detach", n)
			}
			if c, err := top.client.Dial(vip, time.Second); err == nil {
				c.Close()
				t.Fatal("new connection succeeded after Detach")
			}
		})
	}
}

func attachments(t *testing.T, top *topology, legacy bool) int {
	t.Helper()
	var n int
	err := top.node.Do(func() error {
		l, err := netlink.LinkByName(nodeIf)
		if err != nil {
			return err
		}
		if legacy {
			fs, err := legacyFilters(l)
			n = len(fs)
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		n = len(res.Programs)
		return nil
	})
	if err != nil {
		t.Fatalf("count attachments: %v", err)
	}
	return n
}

// TestAttachUpgradesPinnedLink is the agent upgrade: a pinned link running another
// program (here a pass-through stand-in for an older release) is switched to ours in
// place, keeping the same link, so there is no moment without a program attached.
func TestAttachUpgradesPinnedLink(t *testing.T) {
	top := newTopology(t)
	pin := mountBPFFS(t)
	d := openTest(t, pin, Options{})
	old, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var oldLink link.ID
	err = top.node.Do(func() error {
		l, err := netlink.LinkByName(nodeIf)
		if err != nil {
			return err
		}
		tl, err := link.AttachTCX(link.TCXOptions{Interface: l.Attrs().Index, Program: old, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		defer tl.Close()
		info, err := tl.Info()
		if err != nil {
			return err
		}
		oldLink = info.ID
		return tl.Pin(pin + "/" + linksDir + "/" + nodeIf)
	})
	if err != nil {
		t.Fatalf("attach stand-in old program: %v", err)
	}

	top.attach(t, d)
	l, err := link.LoadPinnedLink(pin+"/"+linksDir+"/"+nodeIf, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	pi, _ := d.objs.PorticoRedirect.Info()
	ours, _ := pi.ID()
	if info.ID != oldLink || info.Program != ours {
		t.Fatalf("link %d runs program %d; want link %d running %d", info.ID, info.Program, oldLink, ours)
	}
	if n := attachments(t, top, false); n != 1 {
		t.Fatalf("%d attachments after upgrade, want 1", n)
	}
	serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	checkSync(t, d, map[Key]uint16{{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}: proxyPort}, 1, 0, 0)
	c, err := top.client.Dial(netip.AddrPortFrom(vipV4, vipPort), 2*time.Second)
	if err != nil {
		t.Fatalf("dial after upgrade: %v", err)
	}
	defer c.Close()
	if err := roundTrip(c, "upgraded"); err != nil {
		t.Fatal(err)
	}
}

// TestOpenMigratesIPv4Entries is the upgrade from a release that kept IPv4 frontends
// v4-mapped in the shared map, which the IPv6 map still is: the new program reads IPv4
// from redirects4 only, so Open must fill it before the program is attached, and the
// first Sync must clear the leftovers.
func TestOpenMigratesIPv4Entries(t *testing.T) {
	top := newTopology(t)
	pin := mountBPFFS(t)
	serveEcho(t, listenTransparent(t, top.node, netip.MustParseAddrPort("127.0.0.1:15001")))
	key4 := Key{Addr: vipV4, Port: vipPort, Proto: ProtoTCP}
	key6 := Key{Addr: vipV6, Port: vipPort, Proto: ProtoTCP}
	want := map[Key]uint16{key4: proxyPort, key6: proxyPort}

	// What the older release leaves pinned: both families in redirects, no redirects4.
	old := openTest(t, pin, Options{})
	legacy := redirectRedirectKey{Addr: vipV4.As16(), Port: networkOrder(vipPort), Proto: ProtoTCP, Family: familyInet}
	for _, k := range []redirectRedirectKey{legacy, encodeKey(key6)} {
		if err := old.objs.Redirects.Put(k, redirectRedirectValue{ProxyPort: proxyPort}); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.objs.Redirects4.Unpin(); err != nil {
		t.Fatal(err)
	}
	old.Close()

	d := openTest(t, pin, Options{})
	if got, err := d.Entries(); err != nil || !maps.Equal(got, want) {
		t.Fatalf("Entries after Open = %v, %v; want %v", got, err, want)
	}
	top.attach(t, d)
	c, err := top.client.Dial(netip.AddrPortFrom(vipV4, vipPort), 2*time.Second)
	if err != nil {
		t.Fatalf("migrated IPv4 frontend not served before the first Sync: %v", err)
	}
	defer c.Close()
	if err := roundTrip(c, "migrated"); err != nil {
		t.Fatal(err)
	}
	checkSync(t, d, want, 0, 0, 1)
	raw, err := rawEntries[redirectRedirectKey](d.objs.Redirects)
	if err != nil {
		t.Fatal(err)
	}
	for k := range raw {
		if k.Family != familyInet6 {
			t.Fatalf("IPv4 leftover %s still in the IPv6 map after Sync", decodeKey(k))
		}
	}
}
