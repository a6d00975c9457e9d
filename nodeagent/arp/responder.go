//go:build linux

// Package arp is the node agent's layer-2 announcer: it answers ARP requests (IPv4) and
// Neighbor Solicitations (IPv6) for the service IPs the L2 controller assigned to this
// node, and announces a newly acquired IP with gratuitous ARP / unsolicited Neighbor
// Advertisements so that clients and switches move to this node at once.
//
// The service IPs are not configured on any interface, so the kernel never answers for
// them itself: this responder is the only thing that makes them reachable on the LAN.
package arp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/portico-dev/portico/internal/l2iface"
)

// Announcement is one IP this node must answer for.
type Announcement struct {
	IP netip.Addr
	// Interfaces selects the interfaces (by name) the IP is announced on; empty means
	// every non-loopback interface.
	Interfaces []*regexp.Regexp
	// Service is namespace/name, only used in logs.
	Service string
}

// Options tunes a Responder. Zero values get the defaults documented per field.
type Options struct {
	// GratuitousCount is how many gratuitous ARPs / unsolicited NAs announce a newly
	// acquired IP on each interface (default 3). One packet can be lost or arrive before
	// a switch port is up; a short burst makes the handover robust.
	GratuitousCount int
	// GratuitousInterval separates the packets of a burst (default 1s); the first one is
	// sent immediately.
	GratuitousInterval time.Duration
	// LinkScanInterval is how often interfaces are listed to pick up ones that appeared
	// or disappeared (default 2s).
	LinkScanInterval time.Duration
	// Fenced, if set and returning true, silences the responder: no replies and no
	// gratuitous packets. The agent fences itself when it cannot renew its heartbeat, so
	// that two nodes never answer for one IP (design §3). Nothing is re-announced when
	// fencing ends: the controller may have moved the IPs meanwhile, so the agent should
	// keep Fenced true until it has refreshed its set with Set (then call Reannounce).
	Fenced func() bool
	// Exclude names interfaces never answered on, whatever an announcement's patterns
	// say: the per-pod and tunnel interfaces the agent leaves out of the list L2
	// eligibility is decided on (l2iface.Match), so the responder answers exactly where
	// the controller believes it does.
	Exclude *regexp.Regexp
	Log     logr.Logger
}

// Stats counts what the responder did since New.
type Stats struct {
	Replies    uint64 // ARP replies and solicited NAs sent
	Gratuitous uint64 // gratuitous ARPs and unsolicited NAs sent
	Suppressed uint64 // requests for an announced IP left unanswered because fenced
	Errors     uint64 // send failures
	// Interfaces lists the interfaces with an active listener, sorted.
	Interfaces []string
	PerIP      map[netip.Addr]IPStats
}

// IPStats are the per-IP counters.
type IPStats struct {
	Replies, Gratuitous uint64
}

// Responder answers ARP and NDP for the announced set. Create it with New, start it with
// Run and change the set with Set at any time.
type Responder struct {
	opts Options
	log  logr.Logger

	mu   sync.RWMutex
	want map[netip.Addr]Announcement

	// wake asks Run to reconcile listeners with want now instead of at the next scan.
	wake chan struct{}
	// reannounce asks Run to restart the gratuitous bursts of every address.
	reannounce atomic.Bool

	replies, gratuitous, suppressed, errs atomic.Uint64
	statsMu                               sync.Mutex
	perIP                                 map[netip.Addr]*IPStats
	active                                atomic.Pointer[[]string]
}

// New returns a Responder with an empty set.
func New(opts Options) *Responder {
	if opts.GratuitousCount <= 0 {
		opts.GratuitousCount = 3
	}
	if opts.GratuitousInterval <= 0 {
		opts.GratuitousInterval = time.Second
	}
	if opts.LinkScanInterval <= 0 {
		opts.LinkScanInterval = 2 * time.Second
	}
	r := &Responder{
		opts:  opts,
		log:   opts.Log,
		want:  map[netip.Addr]Announcement{},
		wake:  make(chan struct{}, 1),
		perIP: map[netip.Addr]*IPStats{},
	}
	r.active.Store(&[]string{})
	return r
}

// Set replaces the announced set. Released IPs stop being answered at once (every reply
// checks the current set); newly acquired ones are announced by Run as soon as it wakes.
func (r *Responder) Set(anns []Announcement) {
	want := make(map[netip.Addr]Announcement, len(anns))
	for _, a := range anns {
		if !a.IP.IsValid() {
			continue
		}
		// A zone or a 4-in-6 form would never equal the address parsed off the wire.
		a.IP = a.IP.Unmap().WithZone("")
		want[a.IP] = a
	}
	r.mu.Lock()
	r.want = want
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the counters.
func (r *Responder) Stats() Stats {
	s := Stats{
		Replies:    r.replies.Load(),
		Gratuitous: r.gratuitous.Load(),
		Suppressed: r.suppressed.Load(),
		Errors:     r.errs.Load(),
		Interfaces: append([]string(nil), *r.active.Load()...),
		PerIP:      map[netip.Addr]IPStats{},
	}
	r.statsMu.Lock()
	for ip, c := range r.perIP {
		s.PerIP[ip] = *c
	}
	r.statsMu.Unlock()
	return s
}

func (r *Responder) count(ip netip.Addr, gratuitous bool) {
	if gratuitous {
		r.gratuitous.Add(1)
	} else {
		r.replies.Add(1)
	}
	r.statsMu.Lock()
	c := r.perIP[ip]
	if c == nil {
		c = &IPStats{}
		r.perIP[ip] = c
	}
	if gratuitous {
		c.Gratuitous++
	} else {
		c.Replies++
	}
	r.statsMu.Unlock()
}

func (r *Responder) fenced() bool {
	return r.opts.Fenced != nil && r.opts.Fenced()
}

// lookup reports whether ip is announced on the interface named ifname, ignoring
// fencing. It is on the per-packet path: the map lookup rejects foreign IPs before any
// regexp runs.
func (r *Responder) lookup(ifname string, ip netip.Addr) (Announcement, bool) {
	r.mu.RLock()
	a, ok := r.want[ip]
	r.mu.RUnlock()
	if !ok || !r.matches(a, ifname) {
		return Announcement{}, false
	}
	return a, true
}

// shouldAnswer is the single gate for every packet the responder sends.
func (r *Responder) shouldAnswer(ifname string, ip netip.Addr) bool {
	if _, ok := r.lookup(ifname, ip); !ok {
		return false
	}
	if r.fenced() {
		r.suppressed.Add(1)
		return false
	}
	return true
}

func (r *Responder) matches(a Announcement, ifname string) bool {
	return l2iface.Match(a.Interfaces, r.opts.Exclude, ifname)
}

// Reannounce sends a new gratuitous burst for every announced address: after fencing
// ends (the set was just re-read), clients may hold another node's MAC.
func (r *Responder) Reannounce() {
	r.reannounce.Store(true)
	r.Rescan()
}

// ipsFor returns the announced IPs for ifname.
func (r *Responder) ipsFor(ifname string) map[netip.Addr]Announcement {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[netip.Addr]Announcement{}
	for ip, a := range r.want {
		if r.matches(a, ifname) {
			out[ip] = a
		}
	}
	return out
}

// Run manages one listener per interface that has at least one announced IP, until ctx
// is done.
//
// Run opens its sockets and lists interfaces in the network namespace of the calling
// OS thread, and locks itself to that thread for its whole life so that the namespace
// cannot change underneath it (tests run it on a thread switched into a node namespace;
// the agent runs in the host namespace).
func (r *Responder) Run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	links := map[int]*link{}
	defer func() {
		for _, l := range links {
			l.close()
		}
		r.active.Store(&[]string{})
	}()

	tick := time.NewTicker(r.opts.LinkScanInterval)
	defer tick.Stop()
	for {
		r.reconcile(ctx, links)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-r.wake:
		}
	}
}

// reconcile brings links in line with the current interfaces and the announced set.
func (r *Responder) reconcile(ctx context.Context, links map[int]*link) {
	ifaces, err := net.Interfaces()
	if err != nil {
		r.log.Error(err, "list interfaces")
		return
	}
	if r.reannounce.Swap(false) {
		for _, l := range links {
			l.restartBursts()
		}
	}
	seen := map[int]bool{}
	for i := range ifaces {
		ifi := ifaces[i]
		if !usable(&ifi) {
			continue
		}
		ips := r.ipsFor(ifi.Name)
		l := links[ifi.Index]
		// An index reused by a new interface, or a changed MAC, needs fresh sockets.
		if l != nil && (l.ifi.Name != ifi.Name || l.ifi.HardwareAddr.String() != ifi.HardwareAddr.String() || l.dead()) {
			r.log.V(1).Info("restarting listener", "interface", l.ifi.Name)
			l.close()
			delete(links, ifi.Index)
			l = nil
		}
		if len(ips) == 0 {
			continue // no listener on interfaces nothing is announced on
		}
		if l == nil {
			l = newLink(ctx, r, ifi)
			links[ifi.Index] = l
			r.log.Info("listening", "interface", ifi.Name)
		}
		seen[ifi.Index] = true
		l.update(ips)
	}
	for idx, l := range links {
		if !seen[idx] {
			r.log.Info("stopped listening", "interface", l.ifi.Name)
			l.close()
			delete(links, idx)
		}
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.ifi.Name)
	}
	sort.Strings(names)
	r.active.Store(&names)
}

// usable filters out interfaces ARP/NDP cannot run on: loopback, down, and links
// without an Ethernet address (tun, WireGuard, ...).
func usable(ifi *net.Interface) bool {
	return ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagUp != 0 && len(ifi.HardwareAddr) == 6
}

// link is the state of one interface: its IPv4 and IPv6 listeners and the announcement
// bursts in flight.
type link struct {
	r   *Responder
	ifi net.Interface
	ctx context.Context

	cancel context.CancelFunc
	v4     *arpListener // nil until opened; reopened on the next scan after a failure
	v6     *ndpListener
	bursts map[netip.Addr]context.CancelFunc
	wg     sync.WaitGroup
}

func newLink(ctx context.Context, r *Responder, ifi net.Interface) *link {
	ctx, cancel := context.WithCancel(ctx)
	return &link{r: r, ifi: ifi, ctx: ctx, cancel: cancel, bursts: map[netip.Addr]context.CancelFunc{}}
}

// dead reports whether a listener stopped on a read error (the interface went away or
// its sockets broke) so the link must be rebuilt.
func (l *link) dead() bool {
	return (l.v4 != nil && l.v4.failed.Load()) || (l.v6 != nil && l.v6.failed.Load())
}

// update opens the listeners the set needs, starts a burst for every newly announced
// IP and cancels bursts (and NDP group memberships) of released ones.
func (l *link) update(ips map[netip.Addr]Announcement) {
	var need4, need6 bool
	for ip := range ips {
		need4 = need4 || ip.Is4()
		need6 = need6 || ip.Is6()
	}
	if need4 && l.v4 == nil {
		v4, err := listenARP(l)
		if err != nil {
			l.r.log.Error(err, "open ARP listener; retrying at next scan", "interface", l.ifi.Name)
		} else {
			l.v4 = v4
		}
	}
	if need6 && l.v6 == nil {
		v6, err := listenNDP(l)
		if err != nil {
			l.r.log.Error(err, "open NDP listener; retrying at next scan", "interface", l.ifi.Name)
		} else {
			l.v6 = v6
		}
	}
	if l.v6 != nil {
		l.v6.refresh(ips)
	}
	for ip, cancel := range l.bursts {
		if _, ok := ips[ip]; !ok {
			cancel()
			delete(l.bursts, ip)
			l.r.log.Info("released", "ip", ip, "interface", l.ifi.Name)
		}
	}
	for ip, a := range ips {
		if _, ok := l.bursts[ip]; ok {
			continue
		}
		send := l.gratuitousFunc(ip)
		if send == nil {
			continue // listener not open yet: the next scan retries and then announces
		}
		ctx, cancel := context.WithCancel(l.ctx)
		l.bursts[ip] = cancel
		l.r.log.Info("announcing", "ip", ip, "interface", l.ifi.Name, "service", a.Service)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.burst(ctx, ip, send)
		}()
	}
}

// restartBursts cancels the bursts in flight so that the next update starts a new one
// for every address.
func (l *link) restartBursts() {
	for ip, cancel := range l.bursts {
		cancel()
		delete(l.bursts, ip)
	}
}

func (l *link) gratuitousFunc(ip netip.Addr) func(netip.Addr) error {
	switch {
	case ip.Is4() && l.v4 != nil:
		return l.v4.gratuitous
	case ip.Is6() && l.v6 != nil:
		return l.v6.unsolicited
	}
	return nil
}

// burst sends GratuitousCount announcements of ip, the first at once. Each send is
// gated like a reply, so a release or fencing in the middle stops it.
func (l *link) burst(ctx context.Context, ip netip.Addr, send func(netip.Addr) error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; i < l.r.opts.GratuitousCount; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l.r.shouldAnswer(l.ifi.Name, ip) {
			if err := send(ip); err != nil {
				l.r.sendFailed(err, "gratuitous", l.ifi.Name, ip)
			} else {
				l.r.count(ip, true)
			}
		}
		t.Reset(l.r.opts.GratuitousInterval)
	}
}

func (r *Responder) sendFailed(err error, what, ifname string, ip netip.Addr) {
	r.errs.Add(1)
	r.log.Error(err, "send failed", "kind", what, "interface", ifname, "ip", ip)
}

func (l *link) close() {
	l.cancel()
	if l.v4 != nil {
		l.v4.close()
	}
	if l.v6 != nil {
		l.v6.close()
	}
	l.wg.Wait()
}

// readFailed reports a listener read error unless it is the expected one from close.
func (l *link) readFailed(err error, proto string) {
	if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return
	}
	l.r.log.Info("listener stopped; rebuilding at next scan", "interface", l.ifi.Name, "proto", proto, "error", err.Error())
}
