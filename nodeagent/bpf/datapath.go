//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Regenerating needs clang and the Debian multiarch kernel headers (linux-libc-dev,
// libbpf-dev); the outputs are committed so that building the agent does not.
//go:generate go tool bpf2go -tags linux -target bpfel -type redirect_key -type redirect_key4 -type redirect_value redirect redirect.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

const (
	// DefaultPinPath is where the agent pins maps and links on a node.
	DefaultPinPath = "/sys/fs/bpf/portico"
	// DefaultMaxEntries is the redirect map capacity when nothing else decides it.
	DefaultMaxEntries = 65536

	linksDir = "links"
	// DefaultCgroup is where the sock_ops program that fills the listeners map is
	// attached: the cgroup v2 root, so that it sees every process's listeners (or
	// DefaultCgroup/unified where systemd mounts cgroup v2 there, the hybrid layout).
	DefaultCgroup = "/sys/fs/cgroup"
	// sockopsLink is the pin of the cgroup link, beside (not in) linksDir, which holds
	// one pin per interface.
	sockopsLink = "sockops_link"
)

// Options tune Open. The zero value is valid.
type Options struct {
	// MaxEntries is the redirect map capacity, for each address family. Zero means the
	// capacity of the map already pinned, or DefaultMaxEntries for a fresh pin path. A
	// non-zero value that differs from the pinned map's makes Open fail: resizing would
	// need a new map and a migration, which this package does not do behind the
	// caller's back.
	MaxEntries uint32
	// DisableTCX forces the legacy clsact qdisc + cls_bpf filter even where TCX exists.
	DisableTCX bool
	// Cgroup is the cgroup v2 directory whose sockets' loopback listeners the program
	// finds by map rather than by socket lookup (a faster path for new connections;
	// see redirect.c). Empty means the cgroup v2 root (DefaultCgroup). A path that is not on cgroup v2 just
	// leaves the map empty.
	Cgroup string
}

// Datapath is a handle on the loaded program and its pinned state.
type Datapath struct {
	pinPath string
	opts    Options
	objs    redirectObjects
	// connect are the host-network clients' hooks, loaded by AttachConnect.
	connect *connectObjects

	// mu serialises Sync so that two concurrent diffs cannot interleave.
	mu sync.Mutex
}

// Open loads the redirect program and creates its maps under pinPath, or adopts the maps
// already pinned there (entries and counters are kept). pinPath must be on a bpffs
// mount; an empty pinPath means DefaultPinPath.
func Open(pinPath string, opts Options) (*Datapath, error) {
	if pinPath == "" {
		pinPath = DefaultPinPath
	}
	if err := ensurePinDir(pinPath); err != nil {
		return nil, err
	}
	spec, err := loadRedirect()
	if err != nil {
		return nil, err
	}
	size, err := mapSize(filepath.Join(pinPath, redirectMapRedirects), opts.MaxEntries)
	if err != nil {
		return nil, err
	}
	spec.Maps[redirectMapRedirects].MaxEntries = size
	spec.Maps[redirectMapRedirects4].MaxEntries = size

	d := &Datapath{pinPath: pinPath, opts: opts}
	err = spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: pinPath},
	})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load redirect program: %+v", verr)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("pinned maps under %s do not match this program (upgrade changed the layout; run Remove first): %w", pinPath, err)
		}
		return nil, fmt.Errorf("load redirect objects: %w", err)
	}
	if err := d.migrateIPv4(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// migrateIPv4 copies the IPv4 entries that a release before redirects4 kept in the
// shared map, so that the program this Datapath attaches (which looks IPv4 up in
// redirects4 only) serves them from the moment it replaces the old one. The old
// program keeps reading the originals until then; the next Sync deletes them. Entries
// already in redirects4 win: they were written by a Sync of this release.
func (d *Datapath) migrateIPv4() error {
	var (
		k redirectRedirectKey
		v redirectRedirectValue
	)
	it := d.objs.Redirects.Iterate()
	for it.Next(&k, &v) {
		if k.Family != familyInet {
			continue
		}
		err := d.objs.Redirects4.Update(encodeKey4(decodeKey(k)), v, ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("migrate %s to the IPv4 map: %w", decodeKey(k), err)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read redirect map: %w", err)
	}
	return nil
}

// PinPath reports where the datapath's state is pinned.
func (d *Datapath) PinPath() string { return d.pinPath }

// MaxEntries reports the redirect map capacity, per address family.
func (d *Datapath) MaxEntries() uint32 { return d.objs.Redirects.MaxEntries() }

// Close releases this process's file descriptors. Pinned maps and links stay, so
// attached interfaces keep redirecting.
func (d *Datapath) Close() error {
	if d.connect != nil {
		_ = d.connect.Close()
	}
	return d.objs.Close()
}

// Remove detaches every interface this datapath attached (pinned TCX links, and legacy
// tc filters in the calling thread's network namespace), unpins the maps and deletes the
// pin directory. It is the uninstall path; the Datapath is closed afterwards.
func (d *Datapath) Remove() error {
	var errs []error
	entries, err := os.ReadDir(filepath.Join(d.pinPath, linksDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if err := unpinLink(filepath.Join(d.pinPath, linksDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeLegacyFilters(""); err != nil {
		errs = append(errs, err)
	}
	if err := unpinLink(filepath.Join(d.pinPath, sockopsLink)); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, d.detachConnect()...)
	for _, m := range []*ebpf.Map{d.objs.Redirects, d.objs.Redirects4, d.objs.RedirectStats, d.objs.Listeners, d.objs.ListenerStats, d.objs.ListenerNetns} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.Close())
	for _, dir := range []string{filepath.Join(d.pinPath, linksDir), d.pinPath} {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensurePinDir creates pinPath and refuses anything that is not bpffs, because pins on
// another file system fail later with a far less helpful error.
func ensurePinDir(pinPath string) error {
	if err := os.MkdirAll(filepath.Join(pinPath, linksDir), 0o700); err != nil {
		return fmt.Errorf("create pin path: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pinPath, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", pinPath, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin path %s is not on a bpffs mount (mount -t bpf bpf /sys/fs/bpf)", pinPath)
	}
	return nil
}

func mapSize(pinned string, want uint32) (uint32, error) {
	m, err := ebpf.LoadPinnedMap(pinned, nil)
	if errors.Is(err, os.ErrNotExist) {
		if want == 0 {
			want = DefaultMaxEntries
		}
		return want, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open pinned redirect map: %w", err)
	}
	defer m.Close()
	have := m.MaxEntries()
	if want != 0 && want != have {
		return 0, fmt.Errorf("pinned redirect map %s holds %d entries, %d requested: Remove it to resize", pinned, have, want)
	}
	return have, nil
}

// Counter indexes the per-CPU statistics; keep in sync with enum counter in redirect.c.
type Counter uint32

const (
	CounterHit Counter = iota
	CounterMiss
	CounterLookupFail
	CounterEstablished
	CounterAssignFail
	counterMax
)

// Stats are the program's counters summed over CPUs. They are pinned, so they survive
// agent restarts and only reset with Remove.
type Stats struct {
	Hits           uint64 // new connections handed to the proxy listener
	Misses         uint64 // TCP packets whose destination is not in the map
	LookupFailures uint64 // map hit but no listener on loopback:proxy_port
	Established    uint64 // packets assigned to an already accepted connection
	AssignFailures uint64 // bpf_sk_assign refused the socket (e.g. SO_REUSEPORT)
	// ListenerMapHits counts the new connections whose proxy listener came from the
	// listeners map rather than a socket lookup; included in Hits or AssignFailures.
	ListenerMapHits uint64
}

// Stats reads the counters.
func (d *Datapath) Stats() (Stats, error) {
	var sums [counterMax]uint64
	for i := range sums {
		var perCPU []uint64
		if err := d.objs.RedirectStats.Lookup(uint32(i), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			sums[i] += v
		}
	}
	var perCPU []uint64
	if err := d.objs.ListenerStats.Lookup(uint32(0), &perCPU); err != nil {
		return Stats{}, fmt.Errorf("read listener counter: %w", err)
	}
	var listenerHits uint64
	for _, v := range perCPU {
		listenerHits += v
	}
	return Stats{
		ListenerMapHits: listenerHits,
		Hits:            sums[CounterHit],
		Misses:          sums[CounterMiss],
		LookupFailures:  sums[CounterLookupFail],
		Established:     sums[CounterEstablished],
		AssignFailures:  sums[CounterAssignFail],
	}, nil
}
