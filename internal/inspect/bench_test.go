package inspect

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// BenchmarkBuildStatus: `status` of one Ingress in a cluster of 100 nodes whose
// L2 controller announces 5,000 addresses (50 per node): what the plugin
// computes after its reads.
func BenchmarkBuildStatus(b *testing.B) {
	const nodeCount, perNode = 100, 50
	var nodes []NodeInfo
	var ann []v1alpha1.NodeProxyConfig
	for i := range nodeCount {
		name := fmt.Sprintf("n%03d", i)
		nodes = append(nodes, healthyNode(name, "100000", "100000"))
		c := announcer(name, "")
		c.Spec.Announcements = nil
		for j := range perNode {
			c.Spec.Announcements = append(c.Spec.Announcements, v1alpha1.Announcement{IP: fmt.Sprintf("10.%d.%d.1", i, j),
				Service: v1alpha1.ServiceRef{Namespace: "ns", Name: fmt.Sprintf("s%d-%d", i, j)}})
		}
		ann = append(ann, c)
	}
	configs := []v1alpha1.NodeProxyConfig{
		{ObjectMeta: metav1.ObjectMeta{Name: "ingress-shared", ResourceVersion: "99990", Generation: 1},
			Spec: v1alpha1.NodeProxyConfigSpec{Redirects: []v1alpha1.Redirect{{Name: "http", VIP: "192.0.2.10", Port: 80, Listener: "l"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ingress.ns.shop", ResourceVersion: "99991", Generation: 1}},
	}
	in := Inputs{Source: Object{Kind: "Ingress", Namespace: "ns", Name: "shop"}, Configs: configs,
		LoadBalancers: []corev1.Service{lbService("192.0.2.10")}, Announcers: ann, Nodes: nodes}
	in.Announcers[7].Spec.Announcements[3].IP = "192.0.2.10"
	b.ReportAllocs()
	for b.Loop() {
		if st := BuildStatus(in); !st.OK {
			b.Fatal(st.Problems)
		}
	}
}
