package npcwriter

import (
	"context"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/scheme"
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
