package agent

import (
	"context"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// TestStatusWritesDoNotSync checks that the writes a node agent causes but that
// change nothing it reads cost no sync: a producer's status write on a config (one
// follows every spec change), the kubelet's status writes on the Node. Each sync
// is O(selected configs); at 10,000 configs one per status write doubled the
// agent's work. A label change on the config and a spec change still sync, and the
// spec change is served. The node's watermark still covers the status writes.
func TestStatusWritesDoNotSync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := env.Client
	const nodeName = "quiet-node"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"quiet": "yes"}}}
	create(t, node)
	npc := &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet"},
		Spec: v1alpha1.NodeProxyConfigSpec{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"quiet": "yes"}},
			Envoy: &v1alpha1.EnvoyResources{Resources: []v1alpha1.EnvoyResource{
				envoyResource(t, benchListenerJSON), envoyResource(t, benchClusterJSON)},
				BackendServices: []v1alpha1.BackendService{benchBackend}},
			RouteFragments: quietRoutes("/before"),
		},
	}
	create(t, npc)
	ads := runAgent(t, ctx, nodeName, Config{DisableL2: true}, true)
	must(t, ads.WaitFor(ctx, holdsOnly("/before")))

	configSyncs := syncs.WithLabelValues("configs")
	// Settled: no sync for a while (the first ones follow the caches filling).
	var before float64
	eventually(t, 20*time.Second, "the agent's syncs settle", func() bool {
		n := testutil.ToFloat64(configSyncs)
		time.Sleep(300 * time.Millisecond)
		before = testutil.ToFloat64(configSyncs)
		return n == before
	})
	ignoredConfigs := testutil.ToFloat64(ignoredUpdates.WithLabelValues("NodeProxyConfig"))
	ignoredNodes := testutil.ToFloat64(ignoredUpdates.WithLabelValues("Node"))

	const writes = 5
	for i := range writes {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(npc), npc))
		conditions.Set(&npc.Status.Conditions, npc.Generation, v1alpha1.ConditionProgrammed, metav1.ConditionFalse,
			v1alpha1.ReasonPending, "status write "+string(rune('a'+i)))
		must(t, c.Status().Update(ctx, npc))
		must(t, c.Get(ctx, client.ObjectKeyFromObject(node), node))
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", Message: "heartbeat " + string(rune('a'+i)), LastHeartbeatTime: metav1.Now()}}
		must(t, c.Status().Update(ctx, node))
	}
	// The events arrived (they were counted as ignored), and none made a sync.
	eventually(t, 20*time.Second, "the status writes reach the agent's watch", func() bool {
		return testutil.ToFloat64(ignoredUpdates.WithLabelValues("NodeProxyConfig")) >= ignoredConfigs+writes &&
			testutil.ToFloat64(ignoredUpdates.WithLabelValues("Node")) >= ignoredNodes+writes
	})
	time.Sleep(500 * time.Millisecond) // longer than Debounce: a kicked sync would have run
	if got := testutil.ToFloat64(configSyncs); got != before {
		t.Fatalf("%v config syncs after %d status writes on the config and the Node, want none", got-before, 2*writes)
	}
	// The node still reports the config's live resourceVersion as applied: what a
	// producer or kubectl-portico compares with it (the spec it applied is the same).
	np := &v1alpha1.NodeProxy{}
	eventually(t, 20*time.Second, "the watermark reaches the last status write", func() bool {
		return c.Get(ctx, client.ObjectKey{Name: nodeName}, np) == nil &&
			cmpRV(np.Status.AppliedResourceVersion, npc.ResourceVersion) >= 0
	})

	// A label is read (the producer label decides whether the config is allowed).
	must(t, c.Get(ctx, client.ObjectKeyFromObject(npc), npc))
	npc.Labels = map[string]string{"touched": "yes"}
	must(t, c.Update(ctx, npc))
	eventually(t, 20*time.Second, "a label change syncs", func() bool { return testutil.ToFloat64(configSyncs) > before })

	// A spec change is served.
	must(t, c.Get(ctx, client.ObjectKeyFromObject(npc), npc))
	npc.Spec.RouteFragments = quietRoutes("/after")
	must(t, c.Update(ctx, npc))
	must(t, ads.WaitFor(ctx, holdsOnly("/after")))
}

func quietRoutes(prefix string) []v1alpha1.RouteFragment {
	return []v1alpha1.RouteFragment{{RouteTable: "bench-routes", Host: "*", Routes: []v1alpha1.FragmentRoute{
		{Precedence: "1", Route: apiextensionsv1.JSON{Raw: []byte(`{"match":{"prefix":"` + prefix + `"},"route":{"cluster":"bench-backend"}}`)}}}}}
}

func holdsOnly(prefix string) func(*xdstest.Client) bool {
	return func(cl *xdstest.Client) bool {
		rc, _ := cl.State(resourcev3.RouteType).Resources["bench-routes"].(*routev3.RouteConfiguration)
		routes := rc.GetVirtualHosts()
		return len(routes) == 1 && len(routes[0].GetRoutes()) == 1 && routes[0].GetRoutes()[0].GetMatch().GetPrefix() == prefix
	}
}
