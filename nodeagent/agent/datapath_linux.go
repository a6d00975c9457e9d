//go:build linux

package agent

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/portico-dev/portico/nodeagent/bpf"
	"github.com/portico-dev/portico/nodeagent/bpf/routing"
	"github.com/portico-dev/portico/nodeagent/render"
)

// datapath is the node's redirect program, adopted from the pin path when an earlier
// agent left it there, and the interfaces it is attached to.
type datapath struct {
	pinPath string
	devices *regexp.Regexp
	size    uint32
	dp      *bpf.Datapath
}

// newDatapath: size is the redirect map capacity per family for a fresh pin path
// (zero: bpf's default); a pinned map keeps its own.
func newDatapath(pinPath string, devices *regexp.Regexp, size uint32) *datapath {
	return &datapath{pinPath: pinPath, devices: devices, size: size}
}

// capacity is how many redirects per address family the open map holds (zero
// while it is not open: render then does not bound them, and sync reports why).
func (d *datapath) capacity() int {
	if d.dp == nil {
		return 0
	}
	return int(d.dp.MaxEntries())
}

// ensure opens the datapath if it is not open yet, installs the policy routing and
// attaches to every matching interface, including ones that appeared since the last
// call. It is called at start and periodically, so a datapath that failed to open (a
// missing capability fixed by a restart of the pod, a bpffs mounted late) recovers.
func (d *datapath) ensure() error {
	if d.dp == nil {
		dp, err := bpf.Open(d.pinPath, bpf.Options{MaxEntries: d.size})
		if err != nil {
			return fmt.Errorf("opening the eBPF datapath at %s: %w", d.pinPath, err)
		}
		d.dp = dp
	}
	if err := routing.EnsureRouting(); err != nil {
		return fmt.Errorf("installing policy routing: %w", err)
	}
	// Redirected packets must skip kube-proxy's DNAT (see routing.EnsureNoTrack).
	if err := routing.EnsureNoTrack(); err != nil {
		return err
	}
	names, err := d.matchingDevices()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return errors.New("no network interface matches --devices")
	}
	var errs []error
	for _, n := range names {
		if err := d.dp.Attach(n); err != nil {
			errs = append(errs, err)
		}
	}
	// After Attach, which records this namespace as the agent's: host-network
	// clients are redirected at connect() (pods by the TC program on their interfaces).
	if err := d.dp.AttachConnect(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// matchingDevices lists the interfaces to attach to: those whose name matches
// --devices, or by default every up, non-loopback interface with an address (the ones
// traffic to a VIP can arrive on).
func (d *datapath) matchingDevices() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if d.devices != nil {
			if d.devices.MatchString(a.Name) {
				out = append(out, a.Name)
			}
			continue
		}
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil || len(addrs) == 0 {
			continue
		}
		out = append(out, a.Name)
	}
	slices.Sort(out)
	return out, nil
}

// sync programs the redirect map; it needs an open datapath.
func (d *datapath) sync(redirects map[render.Key]uint16) error {
	if d.dp == nil {
		return errors.New("the eBPF datapath is not open")
	}
	want := make(map[bpf.Key]uint16, len(redirects))
	for k, port := range redirects {
		want[bpf.Key(k)] = port
	}
	if _, _, _, err := d.dp.Sync(want); err != nil {
		return fmt.Errorf("syncing the redirect map: %w", err)
	}
	return nil
}

// close drops this process's handles; pinned maps and links keep serving (design §4).
func (d *datapath) close() {
	if d.dp != nil {
		_ = d.dp.Close()
	}
}
