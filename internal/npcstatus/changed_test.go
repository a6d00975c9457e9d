package npcstatus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/internal/verdict"
)

// TestPartialPassesJudgeLikeFullOnes: after any sequence of spec writes,
// deletions and node reports, the statuses the reporter wrote, judging only the
// configs that moved or could, say what judging every config says. The
// passes must have been mostly partial, or the test proves nothing.
func TestPartialPassesJudgeLikeFullOnes(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).
		WithStatusSubresource(&v1alpha1.NodeProxyConfig{}, &v1alpha1.NodeProxy{}).Build()
	w := &npcwriter.Writer{Client: c, Producer: "ingress"}
	r := testReporter(c, Options{Writer: w, MinInterval: time.Nanosecond, MaxWritesPerPass: 1000})
	rng := rand.New(rand.NewPCG(3, 5))
	cl := cluster{t: t, ctx: ctx, c: c, w: w}
	for i := range 3 {
		cl.node(fmt.Sprintf("n%d", i))
	}
	for i := range 20 {
		cl.apply(i, rng)
	}
	full0, partial0 := passCount("full"), passCount("partial")
	for step := range 300 {
		what := cl.step(rng)
		if _, err := r.Reconcile(ctx, passKey); err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
		cl.checkStatuses(step, what, r)
	}
	full, partial := passCount("full")-full0, passCount("partial")-partial0
	t.Logf("%.0f full passes, %.0f partial", full, partial)
	if partial < 150 || full < 20 {
		t.Fatalf("%.0f full and %.0f partial passes: the sequence did not exercise both", full, partial)
	}
}

func passCount(kind string) float64 {
	return testutil.ToFloat64(statusPasses.WithLabelValues("ingress", kind))
}

// cluster is a fake cluster with nodes reporting on a producer's configs.
type cluster struct {
	t     *testing.T
	ctx   context.Context
	c     client.Client
	w     *npcwriter.Writer
	nodes []string
	// rv is the highest resourceVersion written so far.
	rv int
}

func (cl *cluster) node(name string) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	np := &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, o := range []client.Object{n, np} {
		if err := cl.c.Create(cl.ctx, o); err != nil {
			cl.t.Fatal(err)
		}
	}
	np.Status.Conditions = []metav1.Condition{cond(v1alpha1.ConditionProxyConnected, metav1.ConditionTrue, v1alpha1.ReasonConnected, "")}
	cl.status(np)
	cl.nodes = append(cl.nodes, name)
}

func cond(t v1alpha1.ConditionType, s metav1.ConditionStatus, r v1alpha1.ConditionReason, msg string) metav1.Condition {
	return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg, LastTransitionTime: metav1.Now()}
}

func (cl *cluster) status(np *v1alpha1.NodeProxy) {
	if err := cl.c.Status().Update(cl.ctx, np); err != nil {
		cl.t.Fatal(err)
	}
}

// apply writes config i with a spec drawn at random (a third select edge nodes).
func (cl *cluster) apply(i int, rng *rand.Rand) {
	src := npcwriter.Source{Kind: "Ingress", Namespace: "default", Name: fmt.Sprintf("web-%02d", i)}
	spec := routeSpec("c" + strconv.Itoa(rng.IntN(1000)))
	if rng.IntN(3) == 0 {
		spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "edge"}}
	}
	if _, err := cl.w.Apply(cl.ctx, npcwriter.NameFor(src), src, spec); err != nil {
		cl.t.Fatal(err)
	}
	cl.rv = max(cl.rv, cl.latest())
}

// latest is the highest resourceVersion of the configs.
func (cl *cluster) latest() int {
	var list v1alpha1.NodeProxyConfigList
	if err := cl.c.List(cl.ctx, &list); err != nil {
		cl.t.Fatal(err)
	}
	top := 0
	for _, c := range list.Items {
		v, _ := strconv.Atoi(c.ResourceVersion)
		top = max(top, v)
	}
	return top
}

// step makes one random change and says what it was.
func (cl *cluster) step(rng *rand.Rand) string {
	name := cl.nodes[rng.IntN(len(cl.nodes))]
	np := &v1alpha1.NodeProxy{}
	if err := cl.c.Get(cl.ctx, client.ObjectKey{Name: name}, np); err != nil {
		cl.t.Fatal(err)
	}
	switch k := rng.IntN(10); {
	case k < 3:
		i := rng.IntN(24)
		cl.apply(i, rng)
		return fmt.Sprintf("config %d written", i)
	case k == 3:
		src := npcwriter.Source{Kind: "Ingress", Namespace: "default", Name: fmt.Sprintf("web-%02d", rng.IntN(24))}
		if err := cl.w.Delete(cl.ctx, npcwriter.NameFor(src)); err != nil {
			cl.t.Fatal(err)
		}
		return "config " + src.Name + " deleted"
	case k < 8:
		// Progress: the node applies up to the newest write, its proxy follows
		// part of the way.
		applied := cl.rv
		prev, _ := strconv.Atoi(np.Status.ProgrammedResourceVersion)
		np.Status.AppliedResourceVersion = strconv.Itoa(applied)
		np.Status.ProgrammedResourceVersion = strconv.Itoa(prev + rng.IntN(applied-prev+1))
		cl.status(np)
		return name + " progressed"
	case k == 8:
		np.Status.Conditions = []metav1.Condition{cond(v1alpha1.ConditionProxyConnected, metav1.ConditionFalse, v1alpha1.ReasonNACKed, "NACK "+strconv.Itoa(rng.IntN(3)))}
		if rng.IntN(2) == 0 {
			np.Status.Conditions[0] = cond(v1alpha1.ConditionProxyConnected, metav1.ConditionTrue, v1alpha1.ReasonConnected, "")
		}
		np.Status.Rejected = nil
		if rng.IntN(2) == 0 {
			src := npcwriter.Source{Kind: "Ingress", Namespace: "default", Name: fmt.Sprintf("web-%02d", rng.IntN(24))}
			np.Status.Rejected = []v1alpha1.RejectedConfig{{Name: npcwriter.NameFor(src), Reason: v1alpha1.ReasonConflict, Message: "taken"}}
		}
		cl.status(np)
		return name + " changed its proxy state or rejections"
	default:
		n := &corev1.Node{}
		if err := cl.c.Get(cl.ctx, client.ObjectKey{Name: name}, n); err != nil {
			cl.t.Fatal(err)
		}
		n.Labels = map[string]string{"pool": []string{"edge", "core"}[rng.IntN(2)]}
		if err := cl.c.Update(cl.ctx, n); err != nil {
			cl.t.Fatal(err)
		}
		return name + " relabelled"
	}
}

// checkStatuses compares every config's status with a judgment of all configs.
func (cl *cluster) checkStatuses(step int, what string, r *Reporter) {
	cl.t.Helper()
	var list v1alpha1.NodeProxyConfigList
	if err := cl.c.List(cl.ctx, &list); err != nil {
		cl.t.Fatal(err)
	}
	nodes, err := r.nodes(cl.ctx)
	if err != nil {
		cl.t.Fatal(err)
	}
	var inputs []verdict.Config
	for i := range list.Items {
		if in, ok := r.input(&list.Items[i]); ok {
			inputs = append(inputs, in)
		}
	}
	want := verdict.Compute(inputs, nodes)
	for _, c := range list.Items {
		v, ok := want[c.Name]
		if !ok {
			continue
		}
		if !v.InStatus(&c.Status, c.Generation) {
			s, reason, msg := v.Condition()
			cl.t.Fatalf("step %d (%s): %s's status %+v, a full judgment says %s %s %q", step, what, c.Name, c.Status, s, reason, msg)
		}
		if got, _ := r.Verdict(c.Name); !identical(got, v) {
			cl.t.Fatalf("step %d (%s): %s's verdict handed to the producer %+v, a full judgment %+v", step, what, c.Name, got, v)
		}
	}
}
