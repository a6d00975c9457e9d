package agent

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-dev/portico/internal/l2quorum"
	"github.com/portico-dev/portico/nodeagent/membership"
)

// MemberlistConfig configures L2 liveness between the agents (nodeagent/membership).
type MemberlistConfig struct {
	// Bind is the host:port memberlist listens on (UDP and TCP), Advertise what peers
	// reach it at (empty: derived from Bind or the node's first private address).
	Bind, Advertise string
	// Join are extra seeds (host or host:port, DNS names resolving to several agents
	// allowed); the agents' heartbeat Leases publish the others.
	Join []string
	// SecretKey encrypts memberlist traffic (16, 24 or 32 bytes; same on every member).
	SecretKey []byte
	// Timing defaults to l2quorum.DefaultTiming.
	Timing l2quorum.Timing
	// ResumeGrace is how long a restarted agent waits for the apiserver before it
	// resumes its state file's announcements (default 2 s).
	ResumeGrace time.Duration
}

// setupL2 builds the L2 side of the agent: the gate, the memberlist membership (or the
// Lease as liveness source), the announcer and their runnables.
func setupL2(cfg Config, a *agent, hb *Heartbeat, leases coordclient.LeaseInterface, cache, direct client.Reader, log logr.Logger) ([]manager.Runnable, error) {
	// Without memberlist a lapse is a Lease not renewed for its whole duration: never
	// forgiven. With it, a gap between ping rounds well short of a death declaration is.
	var forgive time.Duration
	if mc := cfg.Memberlist; mc != nil {
		t := mc.Timing
		if t.ProbeInterval == 0 {
			t = l2quorum.DefaultTiming
		}
		forgive = t.Forgive(300 * time.Millisecond)
	}
	gate := membership.NewGate(forgive)
	live := &l2Live{log: log.WithName("l2"), gate: gate, cache: cache, direct: direct,
		path: filepath.Join(cfg.StateDir, L2StateFile), kick: func() { a.kick(true) }, applied: make(chan struct{}, 1),
		active: map[string]bool{}, pending: make(chan struct{}, 1)}
	st, err := loadL2State(live.path)
	if err != nil {
		log.Error(err, "L2 state file unreadable; starting without it")
	}
	hb.OnRelease = gate.Shut
	var runnables []manager.Runnable
	if mc := cfg.Memberlist; mc != nil {
		ms, err := membership.Start(membership.Options{
			Node: cfg.NodeName, Bind: mc.Bind, Advertise: mc.Advertise, SecretKey: mc.SecretKey, Timing: mc.Timing,
			Seeds:    append(append([]string(nil), mc.Join...), st.Peers...),
			Discover: discoverPeers(leases, cfg.NodeName), Log: log.WithName("membership"),
		}, gate)
		if err != nil {
			return nil, err
		}
		ms.Expect(st.Agents)
		live.ms = ms
		hb.Annotations = map[string]string{AnnotationMemberlistAddress: ms.Addr()}
		grace := mc.ResumeGrace
		if grace <= 0 {
			grace = 2 * time.Second
		}
		runnables = append(runnables, manager.RunnableFunc(ms.Run),
			manager.RunnableFunc(func(ctx context.Context) error { return live.runResume(ctx, st, grace) }))
		log.Info("L2 liveness: memberlist", "address", ms.Addr())
	} else {
		hb.OnRenewed = gate.Extend
		log.Info("L2 liveness: heartbeat Lease (memberlist off)", "interval", cfg.HeartbeatInterval, "duration", cfg.HeartbeatDuration)
	}
	live.last = st
	a.l2 = newAnnouncer(func() bool { return !gate.Answering() }, cfg.InterfaceReportExclude, log.WithName("l2"))
	a.l2.live = live
	live.setResponder, live.reannounce = a.l2.replace, a.l2.reannounce
	runnables = append(runnables,
		manager.RunnableFunc(func(ctx context.Context) error { gate.Watch(ctx); return nil }),
		manager.RunnableFunc(live.runRefresh),
		manager.RunnableFunc(live.runAcquire),
		manager.RunnableFunc(a.l2.run))
	return runnables, nil
}

// discoverPeers lists the memberlist addresses the other agents published on their
// heartbeat Leases (a read; it fails harmlessly while the apiserver is unreachable).
func discoverPeers(leases coordclient.LeaseInterface, self string) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		list, err := leases.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, l := range list.Items {
			if !strings.HasPrefix(l.Name, LeasePrefix) || l.Name == LeaseName(self) || l.Spec.HolderIdentity == nil {
				continue
			}
			if addr := l.Annotations[AnnotationMemberlistAddress]; addr != "" {
				out = append(out, addr)
			}
		}
		return out, nil
	}
}
