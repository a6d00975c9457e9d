package l2

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2assign"
	"github.com/portico-dev/portico/internal/l2member"
	"github.com/portico-dev/portico/internal/l2quorum"
)

// MemberlistOptions make the controller join the agents' memberlist cluster as a
// non-announcing member and take node liveness from it: a death costs no apiserver
// write (the agents' Leases are not renewed), and the controller learns it as soon as
// memberlist declares it, by gossip. The controller is also the tie-breaking voter of
// an even number of agents (internal/l2quorum).
type MemberlistOptions struct {
	// Name is the member name (unique in the cluster: the pod name); Bind and Advertise
	// as in l2member.Config.
	Name, Bind, Advertise string
	// Join are seeds besides the addresses the agents publish on their Leases.
	Join      []string
	SecretKey []byte
	Timing    l2quorum.Timing
}

// AnnotationMemberlistAddress is where an agent publishes its memberlist address on its
// heartbeat Lease (nodeagent/agent.AnnotationMemberlistAddress; a test checks they agree).
const AnnotationMemberlistAddress = "l2.portico.dev/memberlist-address"

// handoverGrace is how long, without memberlist, the controller waits between taking an
// address from a live node and giving it to another: the old node's agent needs a watch
// event and a sync to stop answering. With memberlist, the old node's own report that
// it applied its shrunk set ends the wait instead.
const handoverGrace = 500 * time.Millisecond

// members is the controller's view of the memberlist cluster.
type members struct {
	opts MemberlistOptions
	log  logr.Logger

	mu     sync.Mutex
	m      *l2member.Member
	view   map[string]l2quorum.Verdict
	meta   map[string]l2quorum.Member
	frozen bool
	// joined: the addresses agents published on their Leases.
	joined   map[string]bool
	retrying atomic.Bool
	ready    atomic.Bool
}

// run starts the member (only in the leader: one controller votes) and recomputes
// liveness on every membership change, waking the reconcile when it changed.
func (ms *members) run(ctx context.Context, kick func()) error {
	m, err := l2member.Start(l2member.Config{Name: ms.opts.Name, Controller: true, Bind: ms.opts.Bind,
		Advertise: ms.opts.Advertise, SecretKey: ms.opts.SecretKey, Timing: ms.opts.Timing, Log: ms.log.WithName("memberlist")})
	if err != nil {
		return err
	}
	ms.mu.Lock()
	ms.m = m
	ms.mu.Unlock()
	ms.join(ms.opts.Join)
	ms.join(nil)
	ms.log.Info("joined L2 liveness as a non-announcing member", "address", m.Addr())
	started := time.Now()
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			m.Leave(time.Second)
			return nil
		case <-m.Changes():
		case <-retry.C:
			ms.join(nil) // addresses seen before the member started, or whose join failed
			if !ms.ready.Load() && time.Since(started) > viewGrace {
				ms.ready.Store(true) // no agent to be found: a new cluster
				kick()
			}
			continue
		}
		changed := ms.update()
		if !ms.ready.Load() && ms.agentsSeen() {
			ms.ready.Store(true)
			changed = true
		}
		if changed {
			kick()
		}
	}
}

// join remembers the addresses agents publish on their Leases and joins the new ones;
// with nil it joins every remembered address that is not an alive member (seen before
// the member started, or whose join failed: memberlist reports an error only when all
// of a batch failed).
func (ms *members) join(addrs []string) {
	ms.mu.Lock()
	var todo []string
	for _, a := range addrs {
		if _, ok := ms.joined[a]; a != "" && !ok {
			ms.joined[a] = true
			todo = append(todo, a)
		}
	}
	m := ms.m
	if addrs == nil && m != nil {
		alive := map[string]bool{}
		for _, x := range m.AliveAddrs() {
			alive[x] = true
		}
		for a := range ms.joined {
			if !alive[a] {
				todo = append(todo, a)
			}
		}
	}
	ms.mu.Unlock()
	if m == nil || len(todo) == 0 || (addrs == nil && !ms.retrying.CompareAndSwap(false, true)) {
		return
	}
	go func() {
		if addrs == nil {
			defer ms.retrying.Store(false) // one retry at a time: a dead address may take a TCP timeout
		}
		if _, err := m.Join(todo); err != nil {
			ms.log.V(1).Info("joining agents", "addresses", todo, "error", err.Error())
		}
	}()
}

// update recomputes liveness; it reports whether it or an agent's applied set changed.
func (ms *members) update() bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	all := ms.m.Members()
	view, frozen := l2quorum.Decide(all, ms.view)
	meta := map[string]l2quorum.Member{}
	for _, x := range all {
		meta[x.Name] = x
	}
	changed := !maps.Equal(view, ms.view) || !maps.Equal(meta, ms.meta)
	if frozen != ms.frozen {
		if frozen {
			ms.log.Info("this controller sees no quorum of the agents: deaths are not believed until it does")
		} else {
			ms.log.Info("quorum of the agents in sight again")
		}
	}
	ms.view, ms.meta, ms.frozen = view, meta, frozen
	return changed
}

// viewGrace bounds how long a starting controller waits to see any agent before it
// takes an empty view for the truth (a cluster with no agent yet).
const viewGrace = 10 * time.Second

// Ready reports whether the view can be acted on: a controller that just started (or
// just became leader) sees nobody until its joins complete, and acting on that would
// withdraw every address for a moment.
func (ms *members) Ready() bool { return ms.ready.Load() }

func (ms *members) agentsSeen() bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, v := range ms.view {
		if v.Live {
			return true
		}
	}
	return false
}

// Live is the liveness of node for assignment.
func (ms *members) Live(node string) (bool, string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	v, ok := ms.view[node]
	if !ok {
		return false, l2quorum.DownUnknown
	}
	return v.Live, v.Why
}

// applied reports whether node's agent published that it applied exactly the addresses
// of npc (nil: none).
func (ms *members) applied(node string, npc *v1alpha1.NodeProxyConfig) bool {
	var ips []string
	if npc != nil {
		for _, a := range npc.Spec.Announcements {
			ips = append(ips, a.IP)
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	x, ok := ms.meta[node]
	return ok && x.Applied && x.Hash == l2quorum.SetHash(ips)
}

// holdHandovers keeps an address away from its new node while its previous node is live
// and has not yet let go of it: otherwise the new node could answer before the old one
// saw its shrunk NodeProxyConfig (a watch event and a sync), and a client would hear two
// nodes. The old node's NodeProxyConfig is shrunk in this same reconcile; the address is
// granted on a later one, once the old node's agent reported (memberlist metadata) that
// it applied the shrunk set, or after handoverGrace without memberlist. A dead node
// needs no wait: it fenced itself before it could be declared dead.
//
// It removes held announcements from res (and their moves, reported when granted) and
// returns the held keys with their previous node, and when to look again.
func (c *Controller) holdHandovers(res *l2assign.Result, nodes []l2assign.Node, npcs []v1alpha1.NodeProxyConfig, now time.Time) (map[l2assign.Key]string, time.Duration) {
	live := map[string]bool{}
	for _, n := range nodes {
		live[n.Name] = n.Live
	}
	written := map[string]*v1alpha1.NodeProxyConfig{}
	for i := range npcs {
		written[NodeOf(&npcs[i])] = &npcs[i]
	}
	held := map[l2assign.Key]string{}
	waiting := map[string]bool{}
	var retry time.Duration
	for node, anns := range res.Announcements {
		keep := anns[:0:0]
		for _, a := range anns {
			k, ok := keyOf(a)
			from := c.prev[k]
			if !ok || from == "" || from == node || !live[from] || c.released(from, k.IP, written[from], now) {
				keep = append(keep, a)
				continue
			}
			held[k] = from
			waiting[from+"/"+k.IP.String()] = true
			retry = handoverGrace
		}
		if len(keep) == 0 {
			delete(res.Announcements, node)
		} else {
			res.Announcements[node] = keep
		}
	}
	for k := range c.holdSince {
		if !waiting[k] {
			delete(c.holdSince, k)
		}
	}
	res.Moves = slices.DeleteFunc(res.Moves, func(m l2assign.Move) bool { _, ok := held[m.Key]; return ok && m.To != "" })
	return held, retry
}

// released reports whether node let go of ip: its current NodeProxyConfig no longer
// lists ip and its agent applied that (memberlist), or the grace has passed.
func (c *Controller) released(node string, ip netip.Addr, npc *v1alpha1.NodeProxyConfig, now time.Time) bool {
	if npc != nil && slices.ContainsFunc(npc.Spec.Announcements, func(a v1alpha1.Announcement) bool {
		p, err := netip.ParseAddr(a.IP)
		return err == nil && p == ip
	}) {
		return false // not even shrunk yet
	}
	if c.members != nil {
		return c.members.applied(node, npc)
	}
	k := node + "/" + ip.String()
	since, ok := c.holdSince[k]
	if !ok {
		c.holdSince[k] = now
		return false
	}
	return now.Sub(since) >= handoverGrace
}

// kickReconcile wakes the global reconcile from outside the work queue.
func (c *Controller) kickReconcile() {
	select {
	case c.kick <- event.GenericEvent{Object: &v1alpha1.L2AnnouncementPolicy{}}:
	default: // a reconcile is already pending
	}
}
