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
	// live, when set, sees every rendered set first (gate, metadata, state file).
	live *l2Live
}

// newAnnouncer silences itself whenever fenced says so (see l2Live: the gate closes when
// the node loses its quorum and stays closed until the set is re-read), and never
// answers on the interfaces exclude matches (those left out of what L2 eligibility is
// decided on).
func newAnnouncer(fenced func() bool, exclude *regexp.Regexp, log logr.Logger) *announcer {
	return &announcer{r: arp.New(arp.Options{Fenced: fenced, Exclude: exclude, Log: log})}
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

// set is the sync loop's entry: it returns how many addresses there are.
func (a *announcer) set(anns []v1alpha1.Announcement) int {
	if a.live != nil {
		a.live.apply(anns)
	} else {
		a.replace(anns)
	}
	return len(anns)
}

// replace hands the set to the responder. render has validated the addresses and
// regexes; anything that still fails to parse is skipped.
func (a *announcer) replace(anns []v1alpha1.Announcement) {
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
}

func (a *announcer) reannounce() { a.r.Reannounce() }
