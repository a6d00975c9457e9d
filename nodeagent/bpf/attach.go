//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// legacyFilterName identifies our cls_bpf filter, since tc filters cannot be pinned.
const legacyFilterName = "portico_redirect"

// Attach installs the redirect program on ifname's ingress, in the calling thread's
// network namespace. It uses a TCX link pinned under the pin path (so it outlives the
// process) when the kernel supports TCX, otherwise a clsact qdisc and a cls_bpf filter.
//
// Attach also attaches, once, the sock_ops program that records the loopback
// listeners of the calling thread's network namespace (see redirect.c) to the cgroup
// v2 root or Options.Cgroup, through a link pinned beside the interface links.
//
// Attach is idempotent: an interface already running this program is left alone, and
// one running an older program (agent upgrade) is switched atomically with no window
// in which packets bypass the redirect.
func (d *Datapath) Attach(ifname string) error {
	ifc, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("attach: find %s: %w", ifname, err)
	}
	ifindex := ifc.Attrs().Index
	// Before the interface, so that the proxy listeners started from now on are
	// found by map from the first SYN the program redirects.
	if err := d.attachSockops(); err != nil {
		return err
	}
	if d.opts.DisableTCX {
		return d.attachLegacy(ifc)
	}

	pin := d.linkPin(ifname)
	done, err := d.adoptLink(pin, ifindex)
	if err != nil || done {
		return err
	}
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   d.objs.PorticoRedirect,
		Attach:    ebpf.AttachTCXIngress,
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		return d.attachLegacy(ifc)
	}
	if err != nil {
		return fmt.Errorf("attach tcx ingress on %s: %w", ifname, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin tcx link for %s: %w", ifname, err)
	}
	return nil
}

// adoptLink reports whether a pinned link already serves ifindex, updating its
// program in place if it differs from ours. A pin left behind by a deleted interface
// (the kernel detaches the link, the pin remains) is cleared.
func (d *Datapath) adoptLink(pin string, ifindex int) (bool, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return false, fmt.Errorf("inspect pinned link %s: %w", pin, err)
	}
	if tcx := info.TCX(); tcx == nil || int(tcx.Ifindex) != ifindex {
		if err := l.Unpin(); err != nil {
			return false, fmt.Errorf("unpin stale link %s: %w", pin, err)
		}
		return false, nil
	}
	same, err := d.runsOurProgram(info.Program)
	if err != nil || same {
		return same, err
	}
	if err := l.Update(d.objs.PorticoRedirect); err != nil {
		return false, fmt.Errorf("replace program on pinned link %s: %w", pin, err)
	}
	return true, nil
}

// Detach removes the program from ifname's ingress (pinned TCX link and/or legacy
// filter). Detaching an interface that has neither is not an error.
func (d *Datapath) Detach(ifname string) error {
	errs := []error{unpinLink(d.linkPin(ifname))}
	if _, err := netlink.LinkByName(ifname); err == nil {
		errs = append(errs, removeLegacyFilters(ifname))
	}
	return errors.Join(errs...)
}

// Attached lists the interfaces with a pinned TCX link (legacy filters are not pinned
// and therefore not listed).
func (d *Datapath) Attached() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(d.pinPath, linksDir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}

func (d *Datapath) linkPin(ifname string) string {
	return filepath.Join(d.pinPath, linksDir, ifname)
}

// runsOurProgram reports whether the attached program is ours or an identical load of
// it: same instructions (tag) over the same maps. A restarted agent loads a new program
// instance; swapping it in would be harmless but pointless churn.
func (d *Datapath) runsOurProgram(id ebpf.ProgramID) (bool, error) {
	ours, err := d.objs.PorticoRedirect.Info()
	if err != nil {
		return false, fmt.Errorf("program info: %w", err)
	}
	if oursID, ok := ours.ID(); ok && oursID == id {
		return true, nil
	}
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false, fmt.Errorf("open attached program %d: %w", id, err)
	}
	defer p.Close()
	theirs, err := p.Info()
	if err != nil {
		return false, fmt.Errorf("attached program info: %w", err)
	}
	if theirs.Tag != ours.Tag {
		return false, nil
	}
	a, _ := ours.MapIDs()
	b, _ := theirs.MapIDs()
	return slices.Equal(a, b), nil
}

// unpinLink drops the pin; with no other reference the kernel detaches the link.
func unpinLink(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", pin, err)
	}
	return nil
}

func (d *Datapath) attachLegacy(ifc netlink.Link) error {
	name := ifc.Attrs().Name
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifc.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc on %s: %w", name, err)
	}
	existing, err := legacyFilters(ifc)
	if err != nil {
		return err
	}
	for _, f := range existing {
		same, err := d.runsOurProgram(ebpf.ProgramID(f.Id))
		if err != nil || same {
			return err
		}
	}
	// Replace keyed on (parent, priority, handle) swaps the program atomically.
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifc.Attrs().Index,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    netlink.MakeHandle(0, 1),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           d.objs.PorticoRedirect.FD(),
		Name:         legacyFilterName,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return fmt.Errorf("add tc filter on %s: %w", name, err)
	}
	return nil
}

func legacyFilters(ifc netlink.Link) ([]*netlink.BpfFilter, error) {
	all, err := netlink.FilterList(ifc, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		// No clsact qdisc means no filter of ours.
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tc filters on %s: %w", ifc.Attrs().Name, err)
	}
	var out []*netlink.BpfFilter
	for _, f := range all {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == legacyFilterName {
			out = append(out, bf)
		}
	}
	return out, nil
}

// removeLegacyFilters deletes our cls_bpf filters on ifname, or on every interface of
// the current network namespace when ifname is empty. The clsact qdisc is left in place
// because other tools may have filters on it.
func removeLegacyFilters(ifname string) error {
	var links []netlink.Link
	if ifname != "" {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifname, err)
		}
		links = []netlink.Link{l}
	} else {
		all, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		links = all
	}
	var errs []error
	for _, l := range links {
		filters, err := legacyFilters(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range filters {
			if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete tc filter on %s: %w", l.Attrs().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// attachSockops makes sure the sock_ops program that fills the listeners map is
// attached to the configured cgroup through a link pinned under the pin path, updating
// the program of a link an older agent left there, and that it takes the listeners of
// the calling thread's network namespace. It does nothing where the cgroup is not on
// cgroup v2: new connections then take the socket-lookup path.
func (d *Datapath) attachSockops() error {
	cookie, err := netnsCookie()
	if err != nil {
		return err
	}
	if err := d.objs.ListenerNetns.Update(uint32(0), cookie, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set listener network namespace: %w", err)
	}
	pin := filepath.Join(d.pinPath, sockopsLink)
	l, err := link.LoadPinnedLink(pin, nil)
	if err == nil {
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("inspect pinned link %s: %w", pin, err)
		}
		ours, err := d.objs.PorticoListeners.Info()
		if err != nil {
			return fmt.Errorf("program info: %w", err)
		}
		if id, ok := ours.ID(); ok && id == info.Program {
			return nil
		}
		if err := l.Update(d.objs.PorticoListeners); err != nil {
			return fmt.Errorf("replace program on pinned link %s: %w", pin, err)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	cg := d.cgroupV2()
	if cg == "" {
		return nil
	}
	l, err = link.AttachCgroup(link.CgroupOptions{
		Path:    cg,
		Attach:  ebpf.AttachCGroupSockOps,
		Program: d.objs.PorticoListeners,
	})
	if err != nil {
		return fmt.Errorf("attach sock_ops to cgroup %s: %w", cg, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin sock_ops link: %w", err)
	}
	return nil
}

// cgroupV2 returns the configured cgroup, or by default the cgroup v2 root (mounted at
// /sys/fs/cgroup, or at /sys/fs/cgroup/unified in the hybrid layout of systemd); ""
// when that is not a cgroup v2 directory.
func (d *Datapath) cgroupV2() string {
	candidates := []string{d.opts.Cgroup}
	if d.opts.Cgroup == "" {
		candidates = []string{DefaultCgroup, filepath.Join(DefaultCgroup, "unified")}
	}
	for _, cg := range candidates {
		var st unix.Statfs_t
		if err := unix.Statfs(cg, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return cg
		}
	}
	return ""
}

// netnsCookie identifies the calling thread's network namespace as
// bpf_get_netns_cookie does.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	return cookie, nil
}
