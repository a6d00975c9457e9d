//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

//go:generate go tool bpf2go -tags linux -target bpfel connect connect.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// Pins of the connect hooks' cgroup links, beside the sock_ops link.
const (
	connect4Link = "connect4_link"
	connect6Link = "connect6_link"
)

// AttachConnect redirects host-network clients (see connect.c): it attaches the
// cgroup connect4 and connect6 programs to the cgroup of Options (the cgroup v2 root by
// default) through links pinned under the pin path, so that they outlive the agent
// like the TC links; a link an older agent left is updated in place. The programs act
// only on sockets of the network namespace Attach was last called from (the agent's),
// so call Attach first. Where no cgroup v2 is mounted it does nothing: host-network
// clients then keep kube-proxy's path.
func (d *Datapath) AttachConnect() error {
	cg := d.cgroupV2()
	if cg == "" {
		return nil
	}
	if d.connect == nil {
		spec, err := loadConnect()
		if err != nil {
			return err
		}
		// The redirect maps are resized by Open; the shared ones must match.
		spec.Maps["redirects"].MaxEntries = d.objs.Redirects.MaxEntries()
		spec.Maps["redirects4"].MaxEntries = d.objs.Redirects4.MaxEntries()
		objs := &connectObjects{}
		err = spec.LoadAndAssign(objs, &ebpf.CollectionOptions{
			Maps: ebpf.MapOptions{PinPath: d.pinPath},
			MapReplacements: map[string]*ebpf.Map{
				"redirects": d.objs.Redirects, "redirects4": d.objs.Redirects4, "listener_netns": d.objs.ListenerNetns,
			},
		})
		if err != nil {
			var verr *ebpf.VerifierError
			if errors.As(err, &verr) {
				return fmt.Errorf("load connect programs: %+v", verr)
			}
			return fmt.Errorf("load connect programs: %w", err)
		}
		d.connect = objs
	}
	for _, l := range []struct {
		pin    string
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{
		{connect4Link, d.connect.PorticoConnect4, ebpf.AttachCGroupInet4Connect},
		{connect6Link, d.connect.PorticoConnect6, ebpf.AttachCGroupInet6Connect},
	} {
		if err := attachCgroupPinned(filepath.Join(d.pinPath, l.pin), cg, l.prog, l.attach); err != nil {
			return err
		}
	}
	return nil
}

// attachCgroupPinned makes sure prog is attached to cgroup cg through the link pinned
// at pin, replacing the program of a link found there.
func attachCgroupPinned(pin, cg string, prog *ebpf.Program, attach ebpf.AttachType) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if err == nil {
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return fmt.Errorf("inspect pinned link %s: %w", pin, err)
		}
		ours, err := prog.Info()
		if err != nil {
			return fmt.Errorf("program info: %w", err)
		}
		if id, ok := ours.ID(); ok && id == info.Program {
			return nil
		}
		if err := l.Update(prog); err != nil {
			return fmt.Errorf("replace program on pinned link %s: %w", pin, err)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	l, err = link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: attach, Program: prog})
	if err != nil {
		return fmt.Errorf("attach %s to cgroup %s: %w", attach, cg, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin %s: %w", pin, err)
	}
	return nil
}

// ConnectRewrites is how many connect() calls the connect hooks pointed at a proxy
// listener (zero before AttachConnect).
func (d *Datapath) ConnectRewrites() (uint64, error) {
	if d.connect == nil {
		return 0, nil
	}
	var perCPU []uint64
	if err := d.connect.ConnectStats.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read connect counter: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// detachConnect unpins the connect links and the counter (Remove).
func (d *Datapath) detachConnect() []error {
	var errs []error
	for _, pin := range []string{connect4Link, connect6Link} {
		if err := unpinLink(filepath.Join(d.pinPath, pin)); err != nil {
			errs = append(errs, err)
		}
	}
	if d.connect != nil {
		if err := d.connect.ConnectStats.Unpin(); err != nil {
			errs = append(errs, err)
		}
	} else if err := os.Remove(filepath.Join(d.pinPath, "connect_stats")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errs
}
