//go:build linux

package arp

import (
	"context"
	"net"
	"runtime"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
)

// UsableInterfaces returns the sorted names of the interfaces a Responder can answer on
// (see usable) in the calling thread's network namespace.
func UsableInterfaces() ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range ifaces {
		if usable(&ifaces[i]) {
			out = append(out, ifaces[i].Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// WatchInterfaces calls report with UsableInterfaces at start and whenever the list
// changes, until ctx ends. The L2 controller only assigns an address to a node that has
// an interface the policy names, so a link going up or down must be reported at once:
// netlink link notifications trigger a rescan, and a rescan every interval covers a
// notification lost to a full socket buffer on a busy node.
//
// Like Run, it works in the network namespace of the calling thread and locks itself to
// that thread.
func WatchInterfaces(ctx context.Context, interval time.Duration, log logr.Logger, report func([]string)) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // closing the subscription on shutdown fails it too
				log.Info("link notifications failed; rescanning periodically only", "error", err.Error())
			}
		},
	}); err != nil {
		log.Info("cannot subscribe to link notifications; rescanning periodically only", "error", err.Error())
		updates = nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last []string
	reported := false
	for {
		names, err := UsableInterfaces()
		if err != nil {
			log.Error(err, "list interfaces")
		} else if !reported || !slices.Equal(names, last) {
			report(names)
			last, reported = names, true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case _, ok := <-updates:
			if !ok {
				updates = nil // the subscription ended (its error was logged): poll only
				continue
			}
			// One rescan for a burst of notifications (a pod starting creates several).
			for drained := false; !drained; {
				select {
				case _, ok := <-updates:
					if !ok {
						updates = nil
						drained = true
					}
				default:
					drained = true
				}
			}
		}
	}
}

// Rescan asks Run to look at the interfaces now rather than at the next scan, e.g.
// when a link came up.
func (r *Responder) Rescan() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
