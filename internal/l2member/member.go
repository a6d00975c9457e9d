// Package l2member is the memberlist cluster the node agents and the L2 controller share
// (github.com/hashicorp/memberlist, the library MetalLB's speakers use): liveness runs
// between the members over the node network, so that detecting a dead agent costs the
// apiserver no write at all, and an apiserver outage silences nobody.
//
// Both sides use it the same way: Start a member, Join seeds, read the roster (every
// member ever seen that did not leave, dead ones included, because a quorum counts the
// dead: see internal/l2quorum) and watch Changes. The decisions live in internal/l2quorum;
// this package only translates memberlist's events and metadata.
package l2member

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"

	"github.com/portico-dev/portico/internal/l2quorum"
)

// DefaultPort is memberlist's usual port (MetalLB's too).
const DefaultPort = 7946

// Meta is what a member publishes about itself in memberlist's node metadata (gossiped
// with every alive message, at most 512 bytes).
type Meta struct {
	Controller bool `json:"c,omitempty"`
	// Ready: the agent has synced its caches and can answer for what it is assigned.
	Ready bool `json:"r,omitempty"`
	// Applied and Hash: the agent applied the set of addresses whose l2quorum.SetHash is Hash.
	Applied bool   `json:"a,omitempty"`
	Hash    uint64 `json:"h,omitempty"`
}

// Config configures a member.
type Config struct {
	// Name is the node name for an agent; anything unique for the controller.
	Name       string
	Controller bool
	// Bind is host:port to listen on (UDP and TCP); port 0 picks a free one.
	Bind string
	// Advertise is the host:port peers reach this member at; empty derives it from Bind
	// (or the first private address when Bind is unspecified).
	Advertise string
	// SecretKey, when set (16, 24 or 32 bytes), encrypts and authenticates all traffic:
	// without it anyone on the node network can forge membership messages.
	SecretKey []byte
	Timing    l2quorum.Timing
	// OnMessage receives user messages sent with Send (from another member's Send).
	OnMessage func(msg []byte)
	Log       logr.Logger
}

// Member is this process's membership.
type Member struct {
	ml   *memberlist.Memberlist
	name string
	log  logr.Logger

	mu     sync.Mutex
	meta   Meta
	roster map[string]*entry
	// leaving are the members that said goodbye: memberlist reports a graceful leave
	// like a death (the state it passes NotifyLeave is not updated), so the goodbye is
	// told separately, before leaving.
	leaving map[string]bool
	changes chan struct{}
	onMsg   func([]byte)
	down    atomic.Bool
}

type entry struct {
	state l2quorum.MemberState
	meta  Meta
	addr  string
}

// Start creates the member and starts listening. It joins no one: see Join.
func Start(cfg Config) (*Member, error) {
	if cfg.Name == "" {
		return nil, errors.New("l2member: a name is required")
	}
	host, port, err := splitHostPort(cfg.Bind, DefaultPort)
	if err != nil {
		return nil, fmt.Errorf("l2member: bind address %q: %w", cfg.Bind, err)
	}
	t := cfg.Timing
	if t.ProbeInterval == 0 {
		t = l2quorum.DefaultTiming
	}
	m := &Member{name: cfg.Name, log: cfg.Log, meta: Meta{Controller: cfg.Controller},
		roster: map[string]*entry{}, leaving: map[string]bool{}, changes: make(chan struct{}, 1), onMsg: cfg.OnMessage}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise, port)
		if err != nil {
			return nil, fmt.Errorf("l2member: advertise address %q: %w", cfg.Advertise, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	} else if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		mc.AdvertiseAddr = host
	}
	mc.ProbeInterval, mc.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = t.SuspicionMult, t.SuspicionMaxTimeoutMult
	// Deaths spread by gossip: a short interval makes every member (the controller above
	// all) learn one within a few tens of milliseconds.
	mc.GossipInterval = 50 * time.Millisecond
	// Gossip keeps reaching dead members this long, which is how a healed partition
	// rejoins without waiting for anyone to re-run Join.
	mc.GossipToTheDeadTime = 2 * time.Minute
	mc.DeadNodeReclaimTime = 10 * time.Second
	// A full state exchange with a random member this often (memberlist's default is
	// 30 s): the safety net that ends any disagreement gossip left behind, such as a
	// member others still believe dead after a partition healed.
	mc.PushPullInterval = 5 * time.Second
	// Joins, state exchanges and user messages use TCP: on a node network a peer that
	// has not answered in 2 s is not there (memberlist's default waits 10 s).
	mc.TCPTimeout = 2 * time.Second
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = (*delegate)(m)
	mc.Events = (*events)(m)
	mc.Logger = log.New(&logWriter{log: cfg.Log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("l2member: starting memberlist on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	return m, nil
}

// Name is the member's name.
func (m *Member) Name() string { return m.name }

// Addr is the host:port peers reach this member at.
func (m *Member) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts the seeds (host or host:port; a DNS name may resolve to several
// members) and merges their view. It succeeds if any one answered.
func (m *Member) Join(seeds []string) (int, error) {
	own := m.Addr()
	var others []string
	for _, s := range seeds {
		if s != "" && s != own {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		return 0, nil
	}
	return m.ml.Join(others)
}

// SetMeta publishes meta (gossiped to every member) when it changed.
func (m *Member) SetMeta(meta Meta) error {
	meta.Controller = m.meta.Controller
	m.mu.Lock()
	same := m.meta == meta
	m.meta = meta
	m.mu.Unlock()
	if same {
		return nil
	}
	return m.ml.UpdateNode(time.Second)
}

// Members returns the roster: every member seen that did not leave (dead ones too), and
// those that left until memberlist forgets them, with their state and metadata.
func (m *Member) Members() []l2quorum.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]l2quorum.Member, 0, len(m.roster))
	for name, e := range m.roster {
		out = append(out, l2quorum.Member{Name: name, Controller: e.meta.Controller, State: e.state,
			Ready: e.meta.Ready, Applied: e.meta.Applied, Hash: e.meta.Hash})
	}
	slices.SortFunc(out, func(a, b l2quorum.Member) int {
		return bytes.Compare([]byte(a.Name), []byte(b.Name))
	})
	return out
}

// Addrs returns the address of every agent in the roster but this one, to rejoin with.
func (m *Member) Addrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, e := range m.roster {
		if name != m.name && e.state != l2quorum.Left {
			out = append(out, e.addr)
		}
	}
	slices.Sort(out)
	return out
}

// AliveAddrs returns the addresses of the members memberlist sees alive.
func (m *Member) AliveAddrs() []string {
	var out []string
	for _, n := range m.ml.Members() {
		out = append(out, net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))))
	}
	return out
}

// Changes is signalled (coalesced) when a member joined, left, died or changed its metadata.
func (m *Member) Changes() <-chan struct{} { return m.changes }

// Ping pings a member directly and returns when the ping was sent; it fails if no ack
// came within the probe timeout.
func (m *Member) Ping(name string) (time.Time, error) {
	m.mu.Lock()
	e, ok := m.roster[name]
	m.mu.Unlock()
	if !ok {
		return time.Time{}, fmt.Errorf("l2member: no member %q", name)
	}
	addr, err := net.ResolveUDPAddr("udp", e.addr)
	if err != nil {
		return time.Time{}, err
	}
	sent := time.Now()
	_, err = m.ml.Ping(name, addr)
	return sent, err
}

// User messages start with their kind.
const (
	msgUser    byte = 'U'
	msgLeaving byte = 'L'
)

// Send delivers msg to the member over TCP (to its OnMessage).
func (m *Member) Send(name string, msg []byte) error {
	for _, n := range m.ml.Members() {
		if n.Name == name {
			return m.ml.SendReliable(n, append([]byte{msgUser}, msg...))
		}
	}
	return fmt.Errorf("l2member: %q is not alive", name)
}

// Leave tells the others this member is going (they stop counting it at once), then
// shuts it down.
func (m *Member) Leave(timeout time.Duration) {
	if !m.down.CompareAndSwap(false, true) {
		return
	}
	bye := append([]byte{msgLeaving}, m.name...)
	var wg sync.WaitGroup
	for _, n := range m.ml.Members() {
		if n.Name == m.name {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.ml.SendReliable(n, bye) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	if err := m.ml.Leave(timeout); err != nil {
		m.log.Info("leaving the memberlist cluster", "error", err.Error())
	}
	_ = m.ml.Shutdown()
}

// Shutdown stops the member without telling anyone (as a crash would).
func (m *Member) Shutdown() {
	m.down.Store(true)
	_ = m.ml.Shutdown()
}

func (m *Member) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// events records memberlist's events in the roster. memberlist calls them with its node
// lock held: they must not call back into it.
type events Member

func (e *events) set(n *memberlist.Node, state l2quorum.MemberState) {
	m := (*Member)(e)
	var meta Meta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			m.log.V(1).Info("ignoring unreadable member metadata", "member", n.Name, "error", err.Error())
		}
	}
	m.mu.Lock()
	m.roster[n.Name] = &entry{state: state, meta: meta, addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))}
	m.mu.Unlock()
	m.notify()
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.mu.Lock()
	delete(e.leaving, n.Name)
	e.mu.Unlock()
	e.set(n, l2quorum.Alive)
}

func (e *events) NotifyUpdate(n *memberlist.Node) { e.set(n, l2quorum.Alive) }

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.mu.Lock()
	left := e.leaving[n.Name]
	e.mu.Unlock()
	if left {
		e.set(n, l2quorum.Left)
		return
	}
	e.set(n, l2quorum.Dead)
}

// delegate publishes Meta and hands user messages over; there is no application state
// to gossip.
type delegate Member

func (d *delegate) NodeMeta(limit int) []byte {
	m := (*Member)(d)
	m.mu.Lock()
	b, _ := json.Marshal(m.meta)
	m.mu.Unlock()
	if len(b) > limit {
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgLeaving:
		m := (*Member)(d)
		m.mu.Lock()
		m.leaving[string(b[1:])] = true
		if e, ok := m.roster[string(b[1:])]; ok && e.state == l2quorum.Dead {
			e.state = l2quorum.Left // the goodbye came after the death notice
		}
		m.mu.Unlock()
		m.notify()
	case msgUser:
		if d.onMsg != nil {
			d.onMsg(slices.Clone(b[1:])) // memberlist reuses the buffer
		}
	}
}
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *delegate) LocalState(bool) []byte          { return nil }
func (d *delegate) MergeRemoteState([]byte, bool)   {}

// ReadKey reads a memberlist key from path (raw bytes, or base64 of them); "" is no key.
func ReadKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if d, err := base64.StdEncoding.DecodeString(string(b)); err == nil {
		b = d
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	}
	return nil, fmt.Errorf("%s: the key must be 16, 24 or 32 bytes (AES-128, -192, -256), got %d", path, len(b))
}

func splitHostPort(s string, defPort int) (string, int, error) {
	if s == "" {
		return "0.0.0.0", defPort, nil
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host.
		return s, defPort, nil //nolint:nilerr
	}
	if host == "" {
		host = "0.0.0.0"
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", p)
	}
	return host, port, nil
}

// logWriter turns memberlist's log lines into debug log entries: they are many (every
// suspicion and refutation) and only useful when chasing a problem.
type logWriter struct{ log logr.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info(string(bytes.TrimSpace(p)))
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
