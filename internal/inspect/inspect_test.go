package inspect

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func healthyNode(name, applied, programmed string) NodeInfo {
	return NodeInfo{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}, Proxy: &v1alpha1.NodeProxy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1alpha1.NodeProxyStatus{AppliedResourceVersion: applied, ProgrammedResourceVersion: programmed,
			Conditions: []metav1.Condition{
				{Type: string(v1alpha1.ConditionReady), Status: metav1.ConditionTrue, Reason: "Programmed"},
				{Type: string(v1alpha1.ConditionProxyConnected), Status: metav1.ConditionTrue, Reason: "Connected"},
				{Type: string(v1alpha1.ConditionDatapathReady), Status: metav1.ConditionTrue, Reason: "Attached"},
			}}}}
}

// cfg is a config at resourceVersion rv whose producer wrote Programmed=status
// for generation 2, counting selected nodes.
func cfg(rv string, status metav1.ConditionStatus, observed int64, selected int32) v1alpha1.NodeProxyConfig {
	return v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "c", ResourceVersion: rv, Generation: 2},
		Status: v1alpha1.NodeProxyConfigStatus{ObservedGeneration: observed, SelectedNodes: selected, Conditions: []metav1.Condition{
			{Type: string(v1alpha1.ConditionProgrammed), Status: status, Reason: "x", ObservedGeneration: observed}}},
	}
}

// A node behind the live resourceVersion only because the producer wrote status
// since is programmed when the producer vouches for it, and pending otherwise.
func TestJudgeAfterStatusWrite(t *testing.T) {
	nodes := []NodeInfo{healthyNode("n1", "15", "15")}
	for _, c := range []struct {
		name   string
		config v1alpha1.NodeProxyConfig
		want   State
	}{
		{"producer says programmed", cfg("20", metav1.ConditionTrue, 2, 1), StateProgrammed},
		{"producer says not programmed", cfg("20", metav1.ConditionFalse, 2, 1), StatePending},
		{"producer judged an older generation", cfg("20", metav1.ConditionTrue, 1, 1), StatePending},
		{"a node came since the producer judged", cfg("20", metav1.ConditionTrue, 2, 2), StatePending},
		{"node caught up", cfg("15", metav1.ConditionFalse, 2, 1), StateProgrammed},
	} {
		got := nodeStates(judge([]v1alpha1.NodeProxyConfig{c.config}, nodes)["c"])
		if len(got) != 1 || got[0].State != c.want {
			t.Errorf("%s: %+v, want %s", c.name, got, c.want)
		}
	}
	// A rejection is never overruled by the producer's older word.
	rejecting := healthyNode("n1", "15", "15")
	rejecting.Proxy.Status.Rejected = []v1alpha1.RejectedConfig{{Name: "c", Generation: 2, Reason: v1alpha1.ReasonInvalidSecret, Message: "bad"}}
	got := nodeStates(judge([]v1alpha1.NodeProxyConfig{cfg("15", metav1.ConditionTrue, 2, 1)}, []NodeInfo{rejecting})["c"])
	if len(got) != 1 || got[0].State != StateRejected || got[0].Reason != string(v1alpha1.ReasonInvalidSecret) {
		t.Errorf("rejected node: %+v", got)
	}
}

func lbService(ips ...string) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lb"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func announcer(node, ip string) v1alpha1.NodeProxyConfig {
	return v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: "l2-" + node, ResourceVersion: "10"},
		Spec: v1alpha1.NodeProxyConfigSpec{NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": node}},
			Announcements: []v1alpha1.Announcement{{IP: ip, Service: v1alpha1.ServiceRef{Namespace: "ns", Name: "lb"}}}}}
}

// What is missing on the way to an address is named, with the responsible
// controller's own condition.
func TestAddressProblems(t *testing.T) {
	nodes := []NodeInfo{healthyNode("n1", "20", "20"), healthyNode("n2", "20", "20")}
	src := Object{Kind: "Service", Namespace: "ns", Name: "lb"}
	noIP := lbService()
	noIP.Status.Conditions = []metav1.Condition{{Type: string(v1alpha1.ConditionIPAMRequestSatisfied), Status: metav1.ConditionFalse, Reason: "NoPool", Message: "no pool selects it"}}
	for _, c := range []struct {
		name       string
		svc        corev1.Service
		announcers []v1alpha1.NodeProxyConfig
		want       string
	}{
		{"no address", noIP, nil, "Service ns/lb has no address: IPAMRequestSatisfied=False NoPool: no pool selects it"},
		{"nobody announces", lbService("10.0.0.1"), nil, "no node answers ARP/NDP for 10.0.0.1 (Service ns/lb): the Service has no L2Announced condition"},
		{"two nodes announce", lbService("10.0.0.1"), []v1alpha1.NodeProxyConfig{announcer("n1", "10.0.0.1"), announcer("n2", "10.0.0.1")},
			"10.0.0.1 is announced by 2 configs (l2-n1, l2-n2)"},
		{"the announcing node lags", lbService("10.0.0.1"), []v1alpha1.NodeProxyConfig{announcer("n3", "10.0.0.1")},
			"10.0.0.1 is assigned by l2-n3 to a node that runs no agent"},
	} {
		st := BuildStatus(Inputs{Source: src, LoadBalancers: []corev1.Service{c.svc}, Announcers: c.announcers, Nodes: nodes})
		if st.OK || len(st.Problems) != 1 || !strings.HasPrefix(st.Problems[0], c.want) {
			t.Errorf("%s: ok=%v problems %q, want one starting %q", c.name, st.OK, st.Problems, c.want)
		}
	}
	st := BuildStatus(Inputs{Source: src, LoadBalancers: []corev1.Service{lbService("10.0.0.1")},
		Announcers: []v1alpha1.NodeProxyConfig{announcer("n2", "10.0.0.1")}, Nodes: nodes})
	if !st.OK || len(st.Addresses) != 1 || st.Addresses[0].AnnouncedBy != "n2" || st.Addresses[0].State != StateProgrammed {
		t.Errorf("announced address: %+v", st)
	}
}

func TestHeartbeatStates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	lease := func(holder string, renewed time.Duration) coordinationv1.Lease {
		return coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "portico-agent-n1"}, Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(int32(1)), RenewTime: &metav1.MicroTime{Time: now.Add(-renewed)}}}
	}
	for _, c := range []struct {
		lease   coordinationv1.Lease
		want    string
		problem bool
	}{
		{lease("n1", 300*time.Millisecond), HeartbeatLive, false},
		{lease("n1", 5*time.Second), HeartbeatExpired, true},
		{lease("", time.Second), HeartbeatReleased, true},
	} {
		ns := BuildNodes([]NodeInfo{healthyNode("n1", "1", "1")}, []coordinationv1.Lease{c.lease}, now)
		n := ns.Nodes[0]
		if n.Heartbeat == nil || n.Heartbeat.State != c.want || (len(n.Problems) > 0) != c.problem || ns.OK == c.problem {
			t.Errorf("want %s (problem %v): %+v", c.want, c.problem, n)
		}
	}
	// No Lease at all (liveness elsewhere) is shown, not blamed.
	if ns := BuildNodes([]NodeInfo{healthyNode("n1", "1", "1")}, nil, now); !ns.OK || ns.Nodes[0].Heartbeat != nil {
		t.Errorf("without a Lease: %+v", ns)
	}
}
