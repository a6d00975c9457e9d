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
// Attach is idempotent: an interface already running this program is left alone, and
// one running an older program (agent upgrade) is switched atomically with no window
// in which packets bypass the redirect.
func (d *Datapath) Attach(ifname string) error {
	ifc, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("attach: find %s: %w", ifname, err)
	}
	ifindex := ifc.Attrs().Index
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
