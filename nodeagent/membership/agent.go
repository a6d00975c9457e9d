package membership

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/portico-dev/portico/internal/l2member"
	"github.com/portico-dev/portico/internal/l2quorum"
)

// Options configure the agent's membership.
type Options struct {
	// Node is this node's name, also its member name.
	Node string
	// Bind and Advertise: see l2member.Config.
	Bind, Advertise string
	// Seeds are addresses to join (host or host:port); more are found by Discover.
	Seeds []string
	// Discover returns more seeds (the other agents' addresses as published on their
	// heartbeat Leases); it may fail while the apiserver is unreachable.
	Discover  func(context.Context) ([]string, error)
	SecretKey []byte
	Timing    l2quorum.Timing
	Log       logr.Logger
}

// Agent is the node agent's membership.
type Agent struct {
	opts   Options
	member *l2member.Member
	gate   *Gate
	log    logr.Logger

	// announcing: the node has something to announce and pings every PingInterval.
	announcing atomic.Bool
	joining    atomic.Bool
	mu         sync.Mutex
	acks       l2quorum.Acks
	// expected are agents known to exist (from the state file or the apiserver) before
	// memberlist has seen them: a restarted agent that cannot reach its peers must not
	// count itself alone and its own quorum.
	expected map[string]bool
	// held is what this agent holds (SetHeld); queries are Unheld's, by id.
	held      []string
	queries   map[uint64]*query
	nextQuery uint64
	// lastDiscoveryErr is the last discovery error logged ("" when it worked).
	lastDiscoveryErr string
}

// Start joins nothing yet (Run does) but listens at once, so the address can be
// published before the first join.
func Start(opts Options, gate *Gate) (*Agent, error) {
	if opts.Timing.ProbeInterval == 0 {
		opts.Timing = l2quorum.DefaultTiming
	}
	a := &Agent{opts: opts, gate: gate, log: opts.Log, acks: l2quorum.Acks{Agents: map[string]time.Time{}}, expected: map[string]bool{}, queries: map[uint64]*query{}}
	m, err := l2member.Start(l2member.Config{Name: opts.Node, Bind: opts.Bind, Advertise: opts.Advertise,
		SecretKey: opts.SecretKey, Timing: opts.Timing, Log: opts.Log.WithName("memberlist"),
		OnMessage: func(b []byte) { a.handle(b) }})
	if err != nil {
		return nil, err
	}
	a.member = m
	return a, nil
}

// Member is the underlying member.
func (a *Agent) Member() *l2member.Member { return a.member }

// Addr is the address peers reach this agent at.
func (a *Agent) Addr() string { return a.member.Addr() }

// Expect records agents known to exist (node names), counted as voters (dead until
// seen) until they leave.
func (a *Agent) Expect(nodes []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range nodes {
		if n != "" && n != a.opts.Node {
			a.expected[n] = true
		}
	}
}

// SetAnnouncing tells whether the node has addresses to answer for.
func (a *Agent) SetAnnouncing(on bool) { a.announcing.Store(on) }

// PublishMeta tells the other members (the controller above all) whether this agent is
// ready and which set of addresses it was assigned and applied.
func (a *Agent) PublishMeta(ready bool, ips []string) {
	if err := a.member.SetMeta(l2member.Meta{Ready: ready, Applied: true, Hash: l2quorum.SetHash(ips)}); err != nil {
		a.log.Info("publishing membership metadata", "error", err.Error())
	}
}

// Run joins the cluster, pings the voters every PingInterval while announcing, rejoins
// while it lacks a quorum, and leaves gracefully when ctx ends. The caller must have
// silenced the responder before ctx ends: the others reassign at once on a leave.
func (a *Agent) Run(ctx context.Context) error {
	a.join(ctx)
	ping := time.NewTicker(a.opts.Timing.PingInterval)
	defer ping.Stop()
	rejoin := time.NewTicker(time.Second)
	defer rejoin.Stop()
	wasQuorate := false
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			a.gate.Shut()
			a.member.Leave(time.Second)
			return nil
		case <-ping.C:
			// A node with nothing to announce pings half as often, still well within the
			// window: it must notice a lapse too, because the watch events it missed while
			// cut off may assign and withdraw addresses it would otherwise answer for a
			// moment on reconnection (l2quorum.Fence).
			if a.announcing.Load() || !a.gate.Quorate() || tick%2 == 0 {
				a.pingRound()
			}
		case <-rejoin.C:
			// While cut off, and once more right after contact came back: a join is a
			// full state exchange, which is how this agent learns it was declared dead
			// and refutes it. The gossip that would tell it may be spent by the time a
			// partition heals, and pings alone do not carry it, so without this the
			// others could keep it dead until the next periodic exchange. In the
			// background: discovery asks the apiserver, which may be what is down.
			quorate := a.gate.Quorate()
			if (!quorate || !wasQuorate) && a.joining.CompareAndSwap(false, true) {
				go func() { defer a.joining.Store(false); a.join(ctx) }()
			}
			wasQuorate = quorate
		}
	}
}

func (a *Agent) join(ctx context.Context) {
	seeds := append(append([]string(nil), a.opts.Seeds...), a.member.Addrs()...)
	if a.opts.Discover != nil {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		more, err := a.opts.Discover(dctx)
		cancel()
		if err != nil {
			a.reportDiscovery(err)
		} else {
			a.reportDiscovery(nil)
		}
		seeds = append(seeds, more...)
	}
	if n, err := a.member.Join(seeds); err != nil && n == 0 {
		a.log.V(1).Info("joining the memberlist cluster", "seeds", len(seeds), "error", err.Error())
	}
	a.refresh() // a lone agent (or one whose peers all left) is its own quorum
}

// reportDiscovery logs a discovery failure once per distinct error, at the default
// level: a refused list (RBAC) leaves an agent alone in its own cluster, and the
// operator must see why without raising verbosity. Transient outages repeat the same
// message and so are logged once.
func (a *Agent) reportDiscovery(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	a.mu.Lock()
	changed := msg != a.lastDiscoveryErr
	a.lastDiscoveryErr = msg
	a.mu.Unlock()
	switch {
	case !changed:
	case err != nil:
		a.log.Error(err, "discovering memberlist peers from the heartbeat Leases failed; this agent only knows its seeds")
	default:
		a.log.Info("discovering memberlist peers works again")
	}
}

// pingRound pings enough alive voters for a quorum, plus two in case some do not
// answer, each in its own goroutine; every ack extends the gate.
func (a *Agent) pingRound() {
	agents, peers, ctrl := a.voters()
	need := l2quorum.Quorum(l2quorum.Voters(agents)) - 1
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	if len(peers) > need+2 {
		peers = peers[:need+2]
	}
	if ctrl != "" {
		peers = append(peers, ctrl)
	}
	for _, p := range peers {
		go func() {
			sent, err := a.member.Ping(p)
			if err != nil {
				return
			}
			a.mu.Lock()
			if p == ctrl {
				if sent.After(a.acks.Controller) {
					a.acks.Controller = sent
				}
			} else if sent.After(a.acks.Agents[p]) {
				a.acks.Agents[p] = sent
			}
			a.mu.Unlock()
			a.refresh()
		}()
	}
	a.refresh()
}

// voters returns the number of agents in the roster (this one included), the alive
// ones other than this one, and an alive controller when the controller votes.
func (a *Agent) voters() (agents int, peers []string, ctrl string) {
	a.mu.Lock()
	unseen := make(map[string]bool, len(a.expected))
	for n := range a.expected {
		unseen[n] = true
	}
	a.mu.Unlock()
	for _, m := range a.member.Members() {
		delete(unseen, m.Name)
		if m.State == l2quorum.Left {
			continue
		}
		alive := m.State == l2quorum.Alive || m.State == l2quorum.Suspect
		if m.Controller {
			if alive {
				ctrl = m.Name
			}
			continue
		}
		agents++
		if alive && m.Name != a.opts.Node {
			peers = append(peers, m.Name)
		}
	}
	agents += len(unseen)
	if agents == 0 {
		agents = 1 // not even itself yet
	}
	if !l2quorum.ControllerVotes(agents) {
		ctrl = ""
	}
	return agents, peers, ctrl
}

// refresh recomputes the quorum's validity from the acks.
func (a *Agent) refresh() {
	agents, _, _ := a.voters()
	a.mu.Lock()
	until := l2quorum.ValidUntil(a.acks, agents, a.opts.Timing.Window, time.Now())
	a.mu.Unlock()
	if !until.IsZero() {
		a.gate.Extend(until)
	}
}
