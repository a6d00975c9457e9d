package npcwriter

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/internal/testenv"
)

func spec(route string) v1alpha1.NodeProxyConfigSpec {
	return v1alpha1.NodeProxyConfigSpec{RouteFragments: []v1alpha1.RouteFragment{{
		RouteTable: "t", Host: "*",
		Routes: []v1alpha1.FragmentRoute{{Precedence: "1", Route: apiextensionsv1.JSON{Raw: []byte(route)}}},
	}}}
}

func TestWriter(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	w := &Writer{Client: c, Producer: "ingress"}
	src := Source{Kind: "Ingress", Namespace: "default", Name: "web"}

	changed, err := w.Apply(ctx, "ingress.default.web", src, spec(`{"match":{"prefix":"/"},"route":{"cluster":"a"}}`))
	if err != nil || !changed {
		t.Fatalf("create: changed=%v err=%v", changed, err)
	}
	// The same content with its keys in another order is not a change.
	changed, err = w.Apply(ctx, "ingress.default.web", src, spec(`{"route":{"cluster":"a"},"match":{"prefix":"/"}}`))
	if err != nil || changed {
		t.Fatalf("no-op: changed=%v err=%v", changed, err)
	}
	changed, err = w.Apply(ctx, "ingress.default.web", src, spec(`{"match":{"prefix":"/"},"route":{"cluster":"b"}}`))
	if err != nil || !changed {
		t.Fatalf("update: changed=%v err=%v", changed, err)
	}
	got := &v1alpha1.NodeProxyConfig{}
	if err := c.Get(ctx, client.ObjectKey{Name: "ingress.default.web"}, got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		v1alpha1.LabelProducer: "ingress", v1alpha1.LabelSourceKind: "Ingress",
		v1alpha1.LabelSourceNamespace: "default", v1alpha1.LabelSourceName: "web",
	} {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
		}
	}

	// Another producer's object is neither updated nor deleted.
	other := &v1alpha1.NodeProxyConfig{}
	other.Name, other.Labels = "gateway.default.gw", map[string]string{v1alpha1.LabelProducer: "gateway"}
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ctx, other.Name, src, spec(`{}`)); err == nil {
		t.Error("Apply overwrote another producer's config")
	}
	if err := w.Delete(ctx, other.Name); err != nil {
		t.Fatal(err)
	}
	names, err := w.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "ingress.default.web" {
		t.Errorf("Owned = %v", names)
	}
	if err := w.Delete(ctx, "ingress.default.web"); err != nil {
		t.Fatal(err)
	}
	if err := w.Delete(ctx, "ingress.default.web"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: other.Name}, other); err != nil {
		t.Errorf("the gateway's config is gone: %v", err)
	}
}

func TestWriterRefusesOversizedSpec(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	w := &Writer{Client: c, Producer: "ingress"}
	big := spec(`{"name":"` + strings.Repeat("x", MaxSpecBytes) + `"}`)
	_, err := w.Apply(context.Background(), "ingress-shared", Source{}, big)
	if err == nil || !strings.Contains(err.Error(), "over the") {
		t.Fatalf("err = %v", err)
	}
}

// TestWriterRemembersButSeesOthersEdits: re-applying what the writer wrote is
// not a write, the echo of its own write is recognised as such, and an edit or
// deletion by someone else is undone on the next Apply even though the spec
// asked for is the one the writer remembers writing.
//
// It runs against a real apiserver: which versions are told apart depends on
// the generations and resourceVersions only the apiserver assigns.
func TestWriterRemembersButSeesOthersEdits(t *testing.T) {
	ctx := context.Background()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	// Unwatched, the writer finds foreign changes in what it reads; watched, it
	// relies on being shown them through Observe, as a controller does.
	for _, watched := range []bool{false, true} {
		t.Run(fmt.Sprintf("watched=%v", watched), func(t *testing.T) {
			c := env.Client
			w := &Writer{Client: c, Producer: "ingress", Watched: watched}
			src := Source{Kind: "Ingress", Namespace: "default", Name: "web"}
			name := fmt.Sprintf("ingress.default.web-%v", watched)
			want := spec(`{"match":{"prefix":"/"},"route":{"cluster":"a"}}`)
			if changed, err := w.Apply(ctx, name, src, want); err != nil || !changed {
				t.Fatalf("create: changed=%v err=%v", changed, err)
			}
			if changed, err := w.Apply(ctx, name, src, want); err != nil || changed {
				t.Fatalf("unchanged: changed=%v err=%v", changed, err)
			}
			got := &v1alpha1.NodeProxyConfig{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
				t.Fatal(err)
			}
			if !w.Observe(got, false) {
				t.Error("the writer's own write is not recognised")
			}

			got.Spec.RouteFragments[0].Host = "edited.example.com"
			if err := c.Update(ctx, got); err != nil {
				t.Fatal(err)
			}
			if w.OwnWrite(got) {
				t.Error("someone else's edit is taken for the writer's own")
			}
			if watched && w.Observe(got, false) {
				t.Error("someone else's edit is observed as the writer's own")
			}
			if changed, err := w.Apply(ctx, name, src, want); err != nil || !changed {
				t.Fatalf("after a foreign edit: changed=%v err=%v", changed, err)
			}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
				t.Fatal(err)
			}
			if h := got.Spec.RouteFragments[0].Host; h != "*" {
				t.Errorf("host after re-apply = %q, want *", h)
			}

			if err := c.Delete(ctx, got); err != nil {
				t.Fatal(err)
			}
			if watched {
				w.Observe(got, true)
			}
			if changed, err := w.Apply(ctx, name, src, want); err != nil || !changed {
				t.Fatalf("after a foreign delete: changed=%v err=%v", changed, err)
			}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
				t.Fatalf("not re-created: %v", err)
			}
			// The writer's remembered spec is not touched by the client decoding the
			// server's answer into the object it wrote.
			if r := string(want.RouteFragments[0].Routes[0].Route.Raw); r != `{"match":{"prefix":"/"},"route":{"cluster":"a"}}` {
				t.Errorf("the caller's spec was changed by Apply: %s", r)
			}
		})
	}
}

// TestShares: the allocation-free comparison never calls different specs the
// same, tells nil from empty, and sees through a copied top-level struct.
func TestShares(t *testing.T) {
	a := spec(`{"a":1}`)
	a.Envoy = &v1alpha1.EnvoyResources{Secrets: []string{"ns/s"}}
	same := a
	same.Envoy = &v1alpha1.EnvoyResources{Secrets: a.Envoy.Secrets}
	if !shares(reflect.ValueOf(a), reflect.ValueOf(same)) {
		t.Error("a copy sharing every slice is not recognised")
	}
	for name, b := range map[string]v1alpha1.NodeProxyConfigSpec{
		"equal content, other slice": spec(`{"a":1}`),
		"no envoy":                   {RouteFragments: a.RouteFragments},
		"empty instead of nil":       {RouteFragments: a.RouteFragments, Envoy: a.Envoy, Redirects: []v1alpha1.Redirect{}},
	} {
		if shares(reflect.ValueOf(a), reflect.ValueOf(b)) {
			t.Errorf("%s: taken for the same spec", name)
		}
	}
}

// TestApplySetParallel: with Parallelism, ApplySet writes every config of the set,
// sweeps the ones left out, and a second identical set writes nothing.
func TestApplySetParallel(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).Build()
	w := &Writer{Client: c, Producer: "envoyconfig", Parallelism: 8}
	set := func(n int) []Config {
		var out []Config
		for i := range n {
			name := fmt.Sprintf("c%d", i)
			out = append(out, Config{Name: "envoyconfig.default." + name, Source: Source{Kind: "EnvoyConfig", Namespace: "default", Name: name},
				Spec: spec(fmt.Sprintf(`{"match":{"prefix":"/%d"},"route":{"cluster":"a"}}`, i))})
		}
		return out
	}
	count := func() int {
		var list v1alpha1.NodeProxyConfigList
		if err := c.List(ctx, &list); err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	if err := w.ApplySet(ctx, set(50)); err != nil || count() != 50 {
		t.Fatalf("first set: %v, %d configs", err, count())
	}
	if err := w.ApplySet(ctx, set(20)); err != nil || count() != 20 {
		t.Fatalf("smaller set: %v, %d configs", err, count())
	}
	for _, cfg := range set(20) {
		if changed, err := w.Apply(ctx, cfg.Name, cfg.Source, cfg.Spec); err != nil || changed {
			t.Fatalf("%s rewritten (%v, %v)", cfg.Name, changed, err)
		}
	}
}
