package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/nodeagent/membership"
)

// L2StateFile keeps, in the state directory, the agent's last applied announcements and
// its memberlist peers, so that an agent restarted while the apiserver is unreachable
// can rejoin its peers and resume answering (see l2Live.runResume).
const L2StateFile = "l2-announcements.json"

// l2Producer is the producer label value of the L2 controller's NodeProxyConfigs, the only
// ones announcements are taken from (controllers/l2.Producer; not imported: the agent
// does not link the controllers).
const l2Producer = "l2"

type l2State struct {
	Announcements []v1alpha1.Announcement `json:"announcements"`
	// Peers are memberlist addresses to rejoin, Agents the other agents' node names
	// (counted as voters before they are seen again).
	Peers  []string `json:"peers,omitempty"`
	Agents []string `json:"agents,omitempty"`
}

// l2Live connects the responder to L2 liveness: the gate it answers through (fed by the
// memberlist quorum, or by the heartbeat Lease when memberlist is off), the refresh of the
// announcement set after the gate lapsed (issue 10 §5), the check that no other agent
// still answers an address before this one takes it, the memberlist metadata the
// controller reads, and the state file.
type l2Live struct {
	log    logr.Logger
	gate   *membership.Gate
	ms     *membership.Agent // nil when memberlist is off
	cache  client.Reader
	direct client.Reader
	path   string
	// setResponder replaces the responder's set; kick asks the sync loop for a render.
	setResponder func([]v1alpha1.Announcement)
	kick         func()
	reannounce   func()

	saveMu  sync.Mutex // one writer of the state file at a time
	mu      sync.Mutex
	synced  bool // the sync loop applied a set rendered from the synced cache
	applies uint64
	applied chan struct{}
	last    l2State
	resumed atomic.Bool
	// want is the set assigned to this node; active the addresses of it handed to the
	// responder: a newly assigned address becomes active only once no other agent says
	// it still holds it (see runAcquire).
	want    []v1alpha1.Announcement
	active  map[string]bool
	pending chan struct{}
}

// apply is the sync loop's path: every rendered set goes through it.
func (l *l2Live) apply(anns []v1alpha1.Announcement) {
	l.mu.Lock()
	l.synced = true
	l.applies++
	l.setWantLocked(anns)
	changed := !equality.Semantic.DeepEqual(l.last.Announcements, anns)
	l.last.Announcements = slices.Clone(anns)
	l.mu.Unlock()
	select {
	case l.applied <- struct{}{}:
	default:
	}
	l.publish(true, anns)
	if changed {
		l.save()
	}
}

// setWantLocked records the assigned set and hands the responder what of it is active.
// Without memberlist there is nobody to ask, and every address is active at once.
func (l *l2Live) setWantLocked(anns []v1alpha1.Announcement) {
	l.want = slices.Clone(anns)
	wanted := map[string]bool{}
	for _, a := range anns {
		wanted[a.IP] = true
	}
	for ip := range l.active {
		if !wanted[ip] {
			delete(l.active, ip)
		}
	}
	waiting := false
	for ip := range wanted {
		if l.ms == nil {
			l.active[ip] = true
		}
		waiting = waiting || !l.active[ip]
	}
	var out []v1alpha1.Announcement
	var held []string
	for _, a := range anns {
		if l.active[a.IP] {
			out = append(out, a)
			held = append(held, a.IP)
		}
	}
	if l.ms != nil {
		l.ms.SetHeld(held)
	}
	l.setResponder(out)
	if waiting {
		select {
		case l.pending <- struct{}{}:
		default:
		}
	}
}

// runAcquire makes newly assigned addresses active once every other agent alive in the
// memberlist view says it does not hold them. The controller hands an address over from
// a live node only after that node applied its shrunk set, and from a dead one only
// after it fenced itself; this check also covers what neither rule sees: a decision
// written late (a request the apiserver held during an outage and committed after
// the node it took the address from came back), or an agent resumed from its state
// file. A peer that does not answer may hold anything: the address then waits.
func (l *l2Live) runAcquire(ctx context.Context) error {
	if l.ms == nil {
		return nil
	}
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.pending:
		case <-retry.C:
		}
		l.mu.Lock()
		var ips []string
		for _, a := range l.want {
			if !l.active[a.IP] {
				ips = append(ips, a.IP)
			}
		}
		l.mu.Unlock()
		if len(ips) == 0 {
			continue
		}
		free, err := l.ms.Unheld(ctx, ips, 500*time.Millisecond)
		if err != nil {
			l.log.V(1).Info("waiting to take newly assigned addresses", "addresses", ips, "error", err.Error())
			continue
		}
		if len(free) < len(ips) {
			l.log.Info("another agent still holds addresses assigned here; waiting for it to let go", "held", len(ips)-len(free))
		}
		l.mu.Lock()
		for _, ip := range free {
			l.active[ip] = true
		}
		l.setWantLocked(l.want)
		l.mu.Unlock()
	}
}

func (l *l2Live) publish(ready bool, anns []v1alpha1.Announcement) {
	if l.ms == nil {
		return
	}
	ips := make([]string, 0, len(anns))
	for _, a := range anns {
		ips = append(ips, a.IP)
	}
	l.ms.SetAnnouncing(len(ips) > 0)
	l.ms.PublishMeta(ready, ips)
}

// runRefresh lifts the gate after a lapse (and at start) once the announcement set is
// current: it lists the L2 NodeProxyConfigs from the apiserver directly (a quorum read),
// waits until the informer cache holds at least those versions, then waits for two
// more renders (the first may have started before the cache caught up) before it tells
// the gate the set is fresh. Nothing is answered meanwhile.
func (l *l2Live) runRefresh(ctx context.Context) error {
	changes := l.gate.Subscribe()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-tick.C:
			l.saveMembers()
		}
		epoch, ok := l.gate.Begin()
		if !ok {
			continue
		}
		if err := l.refresh(ctx); err != nil {
			l.log.V(1).Info("refreshing the announcement set before answering", "error", err.Error())
			continue
		}
		if l.gate.Refreshed(epoch) {
			l.log.Info("announcement set re-read from the apiserver: answering")
			l.reannounce()
		}
	}
}

func (l *l2Live) refresh(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var fresh v1alpha1.NodeProxyConfigList
	if err := l.direct.List(rctx, &fresh, client.MatchingLabels{v1alpha1.LabelProducer: l2Producer}); err != nil {
		return fmt.Errorf("listing the L2 NodeProxyConfigs: %w", err)
	}
	for {
		var cached v1alpha1.NodeProxyConfigList
		if err := l.cache.List(rctx, &cached, client.MatchingLabels{v1alpha1.LabelProducer: l2Producer}, client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
		if caughtUp(&fresh, &cached) {
			break
		}
		select {
		case <-rctx.Done():
			return errors.New("the cache did not catch up with the apiserver")
		case <-time.After(20 * time.Millisecond):
		}
	}
	l.mu.Lock()
	n0 := l.applies
	l.mu.Unlock()
	for want := n0 + 1; want <= n0+2; want++ {
		l.kick()
		for {
			l.mu.Lock()
			n := l.applies
			l.mu.Unlock()
			if n >= want {
				break
			}
			select {
			case <-rctx.Done():
				return errors.New("no render after the cache caught up")
			case <-l.applied:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// caughtUp reports whether the cache holds every object of the fresh list at its listed
// version or later, and nothing the list no longer had (unless created after it).
// resourceVersions are compared as numbers: etcd revisions, the one comparison
// Kubernetes documents as meaningful for the apiserver this agent talks to.
func caughtUp(fresh, cached *v1alpha1.NodeProxyConfigList) bool {
	listRV, err := strconv.ParseUint(fresh.ResourceVersion, 10, 64)
	if err != nil {
		return false
	}
	have := map[string]uint64{}
	for i := range cached.Items {
		rv, err := strconv.ParseUint(cached.Items[i].ResourceVersion, 10, 64)
		if err != nil {
			return false
		}
		have[cached.Items[i].Name] = rv
	}
	for i := range fresh.Items {
		rv, _ := strconv.ParseUint(fresh.Items[i].ResourceVersion, 10, 64)
		if got, ok := have[fresh.Items[i].Name]; !ok || got < rv {
			return false
		}
		delete(have, fresh.Items[i].Name)
	}
	for _, rv := range have {
		if rv <= listRV {
			return false // deleted before the list, still in the cache
		}
	}
	return true
}

// runResume answers the state file's announcements when the agent restarted and the
// apiserver stays unreachable: only with a quorum, only if the cache has not synced
// meanwhile, and each address only once no other agent holds it (runAcquire: it may
// have been given to another node while this one was down). When the cache syncs, its
// set replaces these.
func (l *l2Live) runResume(ctx context.Context, st l2State, grace time.Duration) error {
	if l.ms == nil || len(st.Announcements) == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(grace):
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		if ctx.Err() != nil {
			return nil
		}
		epoch, ok := l.gate.Begin()
		if !ok {
			continue
		}
		l.mu.Lock()
		if l.synced {
			l.mu.Unlock()
			return nil
		}
		l.setWantLocked(st.Announcements)
		l.mu.Unlock()
		l.publish(true, st.Announcements)
		if l.gate.Refreshed(epoch) {
			l.resumed.Store(true)
			l.log.Info("apiserver unreachable: resuming the last assignment from the state file", "announcements", len(st.Announcements))
			l.reannounce()
			return nil
		}
	}
}

func loadL2State(path string) (l2State, error) {
	var st l2State
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return l2State{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// saveMembers records the memberlist peers when they changed.
func (l *l2Live) saveMembers() {
	if l.ms == nil {
		return
	}
	peers := l.ms.Member().Addrs()
	var agents []string
	for _, m := range l.ms.Member().Members() {
		if !m.Controller && m.Name != l.ms.Member().Name() {
			agents = append(agents, m.Name)
		}
	}
	l.mu.Lock()
	changed := !slices.Equal(peers, l.last.Peers) || !slices.Equal(agents, l.last.Agents)
	l.last.Peers, l.last.Agents = peers, agents
	l.mu.Unlock()
	if changed {
		l.save()
	}
}

// save writes the state file atomically (a crash mid-write leaves the previous one).
func (l *l2Live) save() {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	b, err := json.Marshal(l.last)
	l.mu.Unlock()
	if err == nil {
		tmp := l.path + ".tmp"
		if err = os.MkdirAll(filepath.Dir(l.path), 0o755); err == nil {
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, l.path)
			}
		}
	}
	if err != nil {
		l.log.Error(err, "saving the L2 state file", "path", l.path)
	}
}
