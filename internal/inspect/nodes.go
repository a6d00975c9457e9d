package inspect

import (
	"fmt"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2assign"
)

// Heartbeat states.
const (
	HeartbeatLive     = "live"
	HeartbeatExpired  = "expired"
	HeartbeatReleased = "released"
)

// BuildNodes summarises every node: its agent's report and heartbeat. leases are
// the Leases of the install namespace (those named portico-agent-<node> count;
// liveness may move to gossip between the agents, keeping the Lease only as a
// slow fallback or not at all, so a node without one is shown as such, not
// blamed). Ages are measured on the plugin's clock against the agent's
// timestamps: a skewed clock shows in them.
func BuildNodes(nodes []NodeInfo, leases []coordinationv1.Lease, now time.Time) Nodes {
	byNode := map[string]*coordinationv1.Lease{}
	for i := range leases {
		if n, ok := l2assign.NodeOfLease(leases[i].Name); ok {
			byNode[n] = &leases[i]
		}
	}
	out := Nodes{Nodes: make([]Node, 0, len(nodes)), OK: true}
	for _, n := range nodes {
		line := buildNode(n, byNode[n.Name], now)
		if len(line.Problems) > 0 {
			out.OK = false
		}
		out.Nodes = append(out.Nodes, line)
	}
	return out
}

func buildNode(n NodeInfo, lease *coordinationv1.Lease, now time.Time) Node {
	out := Node{Name: n.Name, Heartbeat: heartbeat(lease, now)}
	switch hb := out.Heartbeat; {
	case hb == nil:
	case hb.State == HeartbeatExpired:
		out.Problems = append(out.Problems, fmt.Sprintf("heartbeat expired: last renewed %.1fs ago, lease %ds", hb.AgeSeconds, hb.DurationSeconds))
	case hb.State == HeartbeatReleased:
		out.Problems = append(out.Problems, "heartbeat released: the agent stopped")
	}
	if n.Proxy == nil {
		return out
	}
	st := &n.Proxy.Status
	gen := n.Proxy.Generation
	out.Agent = true
	out.Ready = condition(st.Conditions, v1alpha1.ConditionReady, gen)
	out.Datapath = condition(st.Conditions, v1alpha1.ConditionDatapathReady, gen)
	out.Proxy = condition(st.Conditions, v1alpha1.ConditionProxyConnected, gen)
	if st.LastUpdateTime != nil {
		t := *st.LastUpdateTime
		out.LastReport = &t
		out.LastReportAgeSec = roundAge(now.Sub(t.Time))
	}
	var acked uint64
	for _, p := range st.Proxies {
		out.Proxies = append(out.Proxies, ProxyState{ID: p.ID, AckedVersion: p.AckedVersion, LastNACK: p.LastNACK})
		if v, err := strconv.ParseUint(p.AckedVersion, 10, 64); err == nil && v > acked {
			acked, out.AckedVersion = v, p.AckedVersion
		}
	}
	out.XDSVersion = st.XDSVersion
	out.Configs, out.Redirects, out.AnnouncedIPs = st.Counters.SelectedConfigs, st.Counters.Redirects, st.Counters.AnnouncedIPs
	out.Rejected = st.RejectedCount
	for _, r := range st.Rejected {
		out.RejectedConfigs = append(out.RejectedConfigs, r.Name)
	}
	switch {
	case out.Ready == nil:
		out.Problems = append(out.Problems, "the agent has not reported yet")
	case out.Ready.Status != metav1.ConditionTrue:
		out.Problems = append(out.Problems, fmt.Sprintf("not ready (%s: %s)", out.Ready.Reason, out.Ready.Message))
	}
	if out.Rejected > 0 {
		out.Problems = append(out.Problems, fmt.Sprintf("%d rejected config(s): see kubectl get nodeproxy %s -o yaml", out.Rejected, n.Name))
	}
	return out
}

func heartbeat(l *coordinationv1.Lease, now time.Time) *Heartbeat {
	if l == nil {
		return nil
	}
	hb := &Heartbeat{Lease: l.Name, State: HeartbeatLive}
	if l.Spec.HolderIdentity != nil {
		hb.Holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseDurationSeconds != nil {
		hb.DurationSeconds = *l.Spec.LeaseDurationSeconds
	}
	if l.Spec.RenewTime != nil {
		t := *l.Spec.RenewTime
		hb.RenewTime = &t
		hb.AgeSeconds = roundAge(now.Sub(t.Time))
	}
	switch {
	case hb.Holder == "":
		hb.State = HeartbeatReleased
	case hb.RenewTime == nil || hb.AgeSeconds > float64(hb.DurationSeconds):
		hb.State = HeartbeatExpired
	}
	return hb
}

// roundAge keeps ages readable: tenths of a second, never negative (clock skew).
func roundAge(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return float64(d.Round(100*time.Millisecond)) / float64(time.Second)
}
