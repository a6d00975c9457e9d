package npcstatus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/internal/verdict"
)

func npc(name string, generation, observed int64, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, programmed int32) *v1alpha1.NodeProxyConfig {
	c := &v1alpha1.NodeProxyConfig{}
	c.Name, c.Generation = name, generation
	c.Status.ObservedGeneration, c.Status.SelectedNodes, c.Status.ProgrammedNodes = observed, 3, programmed
	c.Status.Conditions = []metav1.Condition{{Type: string(v1alpha1.ConditionProgrammed), Status: status, Reason: string(reason), ObservedGeneration: observed}}
	return c
}

// TestPlanOrder: a pass writes first what a user waits for (a spec that moved),
// then rejections and recoveries, then counts, and never what did not change;
// within a priority the longest waiting goes first, and a config whose write
// failed goes after those that can be written.
func TestPlanOrder(t *testing.T) {
	three := verdict.Verdict{Selected: 3, Programmed: []string{"a", "b", "c"}}
	two := verdict.Verdict{Selected: 3, Programmed: []string{"a", "b"}, Pending: []verdict.NodeResult{{Node: "c", Reason: v1alpha1.ReasonPending}}}
	rejected := verdict.Verdict{Selected: 3, Programmed: []string{"a", "b"}, Rejected: []verdict.NodeResult{{Node: "c", Reason: "InvalidRoute", Message: "bad"}}}
	// The unchanged config's status is what its verdict makes.
	unchanged := npc("a-unchanged", 1, 1, "", "", 0)
	three.Apply(&unchanged.Status, 1)
	configs := []*v1alpha1.NodeProxyConfig{
		unchanged,
		npc("b-counts", 1, 1, metav1.ConditionFalse, v1alpha1.ReasonPending, 1), // Pending 1/3 → Pending 2/3
		npc("c-rejected", 1, 1, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, 3),
		npc("d-spec-moved", 2, 1, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, 3),
		npc("e-no-verdict", 1, 1, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, 3),
		npc("f-counts", 1, 1, metav1.ConditionFalse, v1alpha1.ReasonPending, 1),
		npc("g-spec-moved", 2, 1, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, 3),
	}
	verdicts := map[string]verdict.Verdict{"a-unchanged": three, "b-counts": two, "c-rejected": rejected, "d-spec-moved": three,
		"f-counts": two, "g-spec-moved": three}
	now := time.Now()
	names := func(waits map[string]*waiting) string {
		items := order(plan(configs, verdicts, nil), waits, now)
		var got []string
		for _, it := range items {
			got = append(got, fmt.Sprintf("%s:%d", it.config.Name, it.prio))
		}
		return fmt.Sprint(got)
	}
	first := names(map[string]*waiting{})
	if want := "[d-spec-moved:0 g-spec-moved:0 c-rejected:1 b-counts:2 f-counts:2 a-unchanged:3]"; first != want {
		t.Fatalf("order, nothing waiting before = %v, want %v", first, want)
	}
	// f has waited longer than b; d's write failed, a-unchanged no longer waits.
	waits := map[string]*waiting{"f-counts": {since: now.Add(-time.Minute)}, "d-spec-moved": {since: now.Add(-time.Hour), failures: 1},
		"a-unchanged": {since: now.Add(-time.Hour)}}
	if got, want := names(waits), "[g-spec-moved:0 c-rejected:1 f-counts:2 b-counts:2 d-spec-moved:0 a-unchanged:3]"; got != want {
		t.Fatalf("order with waits = %v, want %v", got, want)
	}
	if _, ok := waits["a-unchanged"]; ok {
		t.Errorf("a config that needs no write is still waiting")
	}
	if w := waits["b-counts"]; w == nil || !w.since.Equal(now) {
		t.Errorf("b-counts needs a write since now: %+v", w)
	}
}

// TestPassBudget: when every config's verdict moves at once (a node restarted), a
// pass writes at most MaxWritesPerPass statuses and asks to run again, and a config
// whose spec moved meanwhile is written in the next pass, ahead of the backlog.
func TestPassBudget(t *testing.T) {
	ctx := context.Background()
	const configs = 60
	c, w, np := budgetRig(t, configs, interceptor.Funcs{})
	var heard int
	r := testReporter(c, Options{Writer: w, MinInterval: time.Nanosecond, MaxWritesPerPass: configs,
		OnChange: func(_ context.Context, ch []Change) { heard += len(ch) }})
	registerMetrics()
	pass := func(what string) time.Duration {
		t.Helper()
		res, err := r.Reconcile(ctx, passKey)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res.RequeueAfter
	}
	if requeue := pass("first pass"); programmedCount(t, c) != configs || requeue != 0 {
		t.Fatalf("first pass: %d of %d programmed, requeue after %v", programmedCount(t, c), configs, requeue)
	}

	// The node restarts: every verdict moves to Pending at once.
	np.Status.AppliedResourceVersion, np.Status.ProgrammedResourceVersion = "", ""
	if err := c.Status().Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	r.opts.MaxWritesPerPass, heard = 25, 0
	if requeue := pass("after the restart"); programmedCount(t, c) != configs-25 || requeue <= 0 || heard != 25 {
		t.Fatalf("after the restart: %d statuses still Programmed, %d changes reported, requeue after %v; want %d, 25 and a requeue",
			programmedCount(t, c), heard, requeue, configs-25)
	}

	// A spec change to the last config in name order, still in the backlog: the
	// next pass writes it first.
	src := npcwriter.Source{Kind: "Ingress", Namespace: "default", Name: fmt.Sprintf("web-%02d", configs-1)}
	name := npcwriter.NameFor(src)
	cur := &v1alpha1.NodeProxyConfig{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, cur); err != nil {
		t.Fatal(err)
	}
	generation := cur.Generation
	if _, err := w.Apply(ctx, name, src, routeSpec("b")); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, cur); err != nil {
		t.Fatal(err)
	}
	if cur.Generation == generation {
		// The fake client does not count generations: do it as the apiserver would.
		cur.Generation++
		if err := c.Update(ctx, cur); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Apply(ctx, name, src, routeSpec("b")); err != nil {
			t.Fatal(err)
		}
	}
	pass("after the spec change")
	if err := c.Get(ctx, client.ObjectKey{Name: name}, cur); err != nil {
		t.Fatal(err)
	}
	if cur.Status.ObservedGeneration != cur.Generation {
		t.Fatalf("config whose spec moved: observedGeneration %d, generation %d after the next pass", cur.Status.ObservedGeneration, cur.Generation)
	}
	if requeue := pass("last pass"); requeue != 0 || heard != configs {
		t.Fatalf("last pass: %d of %d changes reported, requeue after %v; want all and no requeue", heard, configs, requeue)
	}
	if n := programmedCount(t, c); n != 0 {
		t.Fatalf("%d configs still Programmed on a node that applied nothing", n)
	}
}

// budgetRig is a fake cluster with the configs written by an ingress writer and one
// node that programmed them all.
func budgetRig(t *testing.T, configs int, funcs interceptor.Funcs) (client.Client, *npcwriter.Writer, *v1alpha1.NodeProxy) {
	t.Helper()
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithInterceptorFuncs(funcs).
		WithStatusSubresource(&v1alpha1.NodeProxyConfig{}, &v1alpha1.NodeProxy{}).Build()
	w := &npcwriter.Writer{Client: c, Producer: "ingress"}
	for i := range configs {
		src := npcwriter.Source{Kind: "Ingress", Namespace: "default", Name: fmt.Sprintf("web-%02d", i)}
		if _, err := w.Apply(ctx, npcwriter.NameFor(src), src, routeSpec("a")); err != nil {
			t.Fatal(err)
		}
	}
	np := &v1alpha1.NodeProxy{}
	np.Name = "node-a"
	if err := c.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	np.Status = v1alpha1.NodeProxyStatus{AppliedResourceVersion: "999999", ProgrammedResourceVersion: "999999",
		Conditions: []metav1.Condition{{Type: string(v1alpha1.ConditionProxyConnected), Status: metav1.ConditionTrue, Reason: "Connected", LastTransitionTime: metav1.Now()}}}
	if err := c.Status().Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	return c, w, np
}

// TestFailingWriteDoesNotStallTheBacklog: a config whose status write keeps
// failing neither holds a slot ahead of the others nor turns the passes into an
// exponential backoff while a backlog waits; its error is returned once the
// backlog is written.
func TestFailingWriteDoesNotStallTheBacklog(t *testing.T) {
	ctx := context.Background()
	const configs = 60
	bad := npcwriter.NameFor(npcwriter.Source{Kind: "Ingress", Namespace: "default", Name: "web-00"})
	attempts := 0
	c, w, _ := budgetRig(t, configs, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		if obj.GetName() == bad {
			attempts++
			return errors.New("refused by a webhook")
		}
		return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
	}})
	r := testReporter(c, Options{Writer: w, MinInterval: time.Nanosecond, MaxWritesPerPass: 25})
	registerMetrics()
	for pass := 1; pass <= 2; pass++ {
		res, err := r.Reconcile(ctx, passKey)
		if err != nil || res.RequeueAfter <= 0 {
			t.Fatalf("pass %d with a backlog: err %v, requeue after %v; want no error and a requeue", pass, err, res.RequeueAfter)
		}
	}
	if n := programmedCount(t, c); n != 49 || attempts != 1 {
		t.Fatalf("after two passes: %d statuses written, %d attempts at the failing one; want 49 (24 + 25) and 1", n, attempts)
	}
	res, err := r.Reconcile(ctx, passKey)
	if err == nil || !strings.Contains(err.Error(), bad) || res.RequeueAfter != 0 {
		t.Fatalf("last pass: err %v, requeue after %v; want the failing config's error", err, res.RequeueAfter)
	}
	if n := programmedCount(t, c); n != configs-1 || attempts != 2 {
		t.Fatalf("after the last pass: %d statuses written, %d attempts; want %d and 2", n, attempts, configs-1)
	}
}

func routeSpec(cluster string) v1alpha1.NodeProxyConfigSpec {
	return v1alpha1.NodeProxyConfigSpec{RouteFragments: []v1alpha1.RouteFragment{{
		RouteTable: "t", Host: "*",
		Routes: []v1alpha1.FragmentRoute{{Precedence: "1", Route: apiextensionsv1.JSON{Raw: []byte(`{"match":{"prefix":"/"},"route":{"cluster":"` + cluster + `"}}`)}}},
	}}}
}

func programmedCount(t *testing.T, c client.Client) int {
	t.Helper()
	var list v1alpha1.NodeProxyConfigList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cfg := range list.Items {
		for _, cond := range cfg.Status.Conditions {
			if cond.Type == string(v1alpha1.ConditionProgrammed) && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == cfg.Generation {
				n++
			}
		}
	}
	return n
}

// testReporter is a Reporter as Setup makes it, on a client without a cache or
// events: the writer's spec writes are what tell it which configs moved.
func testReporter(c client.Client, opts Options) *Reporter {
	registerMetrics()
	r := newReporter(c, nil, opts)
	opts.Writer.NotifyWritten(r.writtenMoved)
	return r
}
