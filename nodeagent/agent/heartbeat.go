package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"
)

// LeasePrefix prefixes the node name in the heartbeat Lease's name (design §2).
const LeasePrefix = "portico-agent-"

// LeaseName is the heartbeat Lease of node.
func LeaseName(node string) string { return LeasePrefix + node }

// Default heartbeat timing when memberlist is off and the Lease is the liveness source
// (the slow fallback, at the kubelet's cadence): failover after a crash then takes up to
// the duration, 40 s. With memberlist on, the Lease only publishes the agent's memberlist
// address (for discovery) and is written once at start, not renewed, unless
// HeartbeatInterval asks for renewals (kubectl visibility); liveness costs no write.
// The lease must be a whole number of seconds (LeaseDurationSeconds).
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultHeartbeatDuration = 40 * time.Second
)

// AnnotationMemberlistAddress on an agent's heartbeat Lease is the host:port its
// memberlist member listens on: the other agents and the L2 controller join it.
const AnnotationMemberlistAddress = "l2.portico.dev/memberlist-address"

// Heartbeat keeps the node's Lease renewed and knows whether the node may still act as
// the holder of its L2 assignments.
//
// Fencing: the agent counts its lease from the moment it sent the renewal that
// succeeded (the renewTime it wrote is taken before sending), and considers itself
// fenced once Duration has passed since then. The Lease publishes Duration rounded up to
// whole seconds, and the L2 controller measures expiry from when it observed the
// renewal, which is after it was sent: so the agent always stops answering before the
// controller hands its IPs to another node, by at least the rounding plus the write's
// latency (assuming clocks that advance at the same rate; no wall-clock agreement is
// needed if the controller uses its own observation time rather than renewTime).
//
// Release: on shutdown the agent clears holderIdentity and renewTime (keeping the
// object, so the next start only updates it). The L2 controller must treat a Lease with
// no holderIdentity as expired at once; that is what makes a graceful restart hand over
// immediately instead of after Duration.
type Heartbeat struct {
	leases   coordclient.LeaseInterface
	name     string
	node     string
	interval time.Duration
	duration time.Duration
	log      logr.Logger
	now      func() time.Time

	// Annotations are set on the Lease (the memberlist address).
	Annotations map[string]string
	// OnRenewed, if set, is told until when each successful renewal makes the node
	// live: the L2 gate's liveness source when memberlist is off.
	OnRenewed func(until time.Time)
	// OnRelease, if set, runs before the Lease is released (the L2 gate shuts there).
	OnRelease func()

	mu         sync.Mutex
	validUntil time.Time
	fenced     bool
	timer      *time.Timer
	changes    chan struct{}
	lease      *coordinationv1.Lease
}

// NewHeartbeat prepares the heartbeat of node in the given Lease client's namespace.
// The node starts fenced: it holds nothing until its first renewal succeeds. A negative
// interval writes the Lease once and never renews it.
func NewHeartbeat(leases coordclient.LeaseInterface, node string, interval, duration time.Duration, log logr.Logger) (*Heartbeat, error) {
	if interval == 0 || duration <= 0 {
		return nil, errors.New("heartbeat interval and duration must be positive (a negative interval: write once)")
	}
	if interval > 0 && duration < 2*interval {
		return nil, fmt.Errorf("heartbeat duration %v must be at least twice the interval %v", duration, interval)
	}
	return &Heartbeat{
		leases: leases, name: LeaseName(node), node: node,
		interval: interval, duration: duration, log: log, now: time.Now,
		fenced: true, changes: make(chan struct{}, 1),
	}, nil
}

// Fenced reports whether the node has gone without a successful renewal for longer than
// the lease duration (or has never renewed). A fenced node must stop answering ARP/NDP.
func (h *Heartbeat) Fenced() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.now().Before(h.validUntil)
}

// Changes signals (coalesced) that Fenced() may have flipped.
func (h *Heartbeat) Changes() <-chan struct{} { return h.changes }

func (h *Heartbeat) notify() {
	select {
	case h.changes <- struct{}{}:
	default:
	}
}

// renewed records a successful renewal sent at sentAt.
func (h *Heartbeat) renewed(sentAt time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	until := sentAt.Add(h.duration)
	if h.OnRenewed != nil {
		h.OnRenewed(until)
	}
	if h.interval < 0 {
		return // written once for discovery: not a liveness source, nothing to fence on
	}
	if !until.After(h.validUntil) {
		return
	}
	h.validUntil = until
	if h.fenced {
		h.fenced = false
		h.notify()
	}
	// A timer rather than the renew loop flips the state, so that a renewal blocked on a
	// hung apiserver cannot delay fencing.
	d := until.Sub(h.now())
	if h.timer == nil {
		h.timer = time.AfterFunc(d, h.expire)
	} else {
		h.timer.Reset(d)
	}
}

func (h *Heartbeat) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.now().Before(h.validUntil) {
		// Renewed meanwhile; the timer was reset (or is about to be).
		return
	}
	if !h.fenced {
		h.fenced = true
		h.log.Info("heartbeat lease not renewed within its duration: fenced", "lease", h.name, "duration", h.duration)
		h.notify()
	}
}

// Run renews the Lease every interval until ctx ends, then releases it. With a
// negative interval it writes it until once successful, then only waits.
func (h *Heartbeat) Run(ctx context.Context) error {
	every := h.interval
	if every < 0 {
		every = 2 * time.Second // retry period of the single write
	}
	t := time.NewTicker(every)
	defer t.Stop()
	written := false
	for {
		if written && h.interval < 0 {
			<-ctx.Done()
			h.release()
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, h.duration)
		sentAt := h.now()
		if err := h.renew(rctx, sentAt); err != nil {
			if ctx.Err() == nil {
				h.log.V(1).Info("renewing heartbeat lease", "lease", h.name, "error", err.Error())
			}
		} else {
			written = true
			h.renewed(sentAt)
		}
		cancel()
		select {
		case <-ctx.Done():
			h.release()
			return nil
		case <-t.C:
		}
	}
}

func (h *Heartbeat) leaseSeconds() int32 {
	return int32(math.Ceil(h.duration.Seconds()))
}

func (h *Heartbeat) renew(ctx context.Context, at time.Time) error {
	if h.lease == nil {
		l, err := h.leases.Get(ctx, h.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: h.name}}
			h.fill(l, at)
			created, err := h.leases.Create(ctx, l, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			h.lease = created
			return nil
		case err != nil:
			return err
		}
		h.lease = l
	}
	l := h.lease.DeepCopy()
	h.fill(l, at)
	updated, err := h.leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		// Re-read next time: a conflict or a deleted Lease would otherwise repeat for ever.
		h.lease = nil
		return err
	}
	h.lease = updated
	return nil
}

func (h *Heartbeat) fill(l *coordinationv1.Lease, at time.Time) {
	// MicroTime keeps sub-second precision: with a 200 ms interval, second precision would
	// make consecutive renewals indistinguishable.
	now := metav1.NewMicroTime(at)
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != h.node || l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &now
		l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	}
	for k, v := range h.Annotations {
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[k] = v
	}
	l.Spec.HolderIdentity = ptr.To(h.node)
	l.Spec.LeaseDurationSeconds = ptr.To(h.leaseSeconds())
	l.Spec.RenewTime = &now
}

// release clears the holder so the L2 controller reassigns at once. It uses a fresh
// context: the run context is already cancelled when this is called.
func (h *Heartbeat) release() {
	if h.OnRelease != nil {
		h.OnRelease()
	}
	h.mu.Lock()
	h.validUntil = time.Time{}
	if h.timer != nil {
		h.timer.Stop()
	}
	if !h.fenced {
		h.fenced = true
		h.notify()
	}
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for attempt := 0; attempt < 3; attempt++ {
		if h.lease == nil {
			l, err := h.leases.Get(ctx, h.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			if err != nil {
				h.log.Error(err, "releasing heartbeat lease", "lease", h.name)
				return
			}
			h.lease = l
		}
		l := h.lease.DeepCopy()
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != h.node {
			return // not ours (any more): nothing to release
		}
		l.Spec.HolderIdentity = nil
		l.Spec.RenewTime = nil
		l.Spec.AcquireTime = nil
		if _, err := h.leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			h.lease = nil
			if apierrors.IsConflict(err) {
				continue
			}
			h.log.Error(err, "releasing heartbeat lease", "lease", h.name)
			return
		}
		h.log.Info("released heartbeat lease", "lease", h.name)
		return
	}
}
