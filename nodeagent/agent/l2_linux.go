//go:build linux

package agent

import (
	"context"
	"net/netip"
	"regexp"
	"time"

	"github.com/go-logr/logr"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/nodeagent/arp"
)

// announcer answers ARP/NDP for the addresses the L2 controller assigned to this node.
type announcer struct {
	r *arp.Responder
}

// newAnnouncer silences itself whenever fenced says so: a node that cannot renew its
// heartbeat stops answering before the controller hands its IPs to another node.
func newAnnouncer(fenced func() bool, log logr.Logger) *announcer {
	return &announcer{r: arp.New(arp.Options{Fenced: fenced, Log: log})}
}

func (a *announcer) run(ctx context.Context) error { return a.r.Run(ctx) }

// watchInterfaces reports the interfaces the responder can answer on whenever they
// change, and makes the responder pick up a new link at once instead of at its next scan.
func (a *announcer) watchInterfaces(ctx context.Context, rescan time.Duration, log logr.Logger, report func([]string)) error {
	return arp.WatchInterfaces(ctx, rescan, log, func(names []string) {
		a.r.Rescan()
		report(names)
	})
}

// set replaces the announced addresses and returns how many there are. render has
// validated the addresses and regexes; anything that still fails to parse is skipped.
func (a *announcer) set(anns []v1alpha1.Announcement) int {
	out := make([]arp.Announcement, 0, len(anns))
	for _, an := range anns {
		ip, err := netip.ParseAddr(an.IP)
		if err != nil {
			continue
		}
		var res []*regexp.Regexp
		for _, expr := range an.Interfaces {
			if re, err := regexp.Compile(expr); err == nil {
				res = append(res, re)
			}
		}
		out = append(out, arp.Announcement{IP: ip.Unmap(), Interfaces: res, Service: an.Service.Namespace + "/" + an.Service.Name})
	}
	a.r.Set(out)
	return len(out)
}
