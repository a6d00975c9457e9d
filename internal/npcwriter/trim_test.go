package npcwriter

import (
	"context"
	"reflect"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/internal/testenv"
)

// fullSpec has a field of every kind, Envoy JSON with its keys out of the
// order the apiserver returns them in.
func fullSpec() v1alpha1.NodeProxyConfigSpec {
	s := spec(`{"route":{"cluster":"a"},"match":{"prefix":"/"}}`)
	s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a", "rack": "1"}}
	s.Envoy = &v1alpha1.EnvoyResources{
		Resources: []v1alpha1.EnvoyResource{
			{TypeURL: envoykit.TypeListener, Raw: []byte(`{"@type":"` + envoykit.TypeListener + `","name":"http-80","address":{"socket_address":{"port_value":80,"address":"0.0.0.0"}}}`)},
			{TypeURL: envoykit.TypeCluster, Raw: []byte(`{"name":"ns/svc:80","@type":"` + envoykit.TypeCluster + `","type":"EDS"}`)},
		},
		Secrets: []string{"ns/cert"},
	}
	s.Redirects = []v1alpha1.Redirect{{Name: "http", VIP: "192.0.2.10", Port: 80, Protocol: v1alpha1.ProtocolTCP, Listener: "http-80"}}
	s.FilterChainFragments = []v1alpha1.FilterChainFragment{{Listener: "http-80",
		FilterChains: []apiextensionsv1.JSON{{Raw: []byte(`{"name":"sni-a","filter_chain_match":{"server_names":["a.example.com"]}}`)}}}}
	return s
}

// TestTrimmedCache: a producer whose cache holds configs as TrimConfig leaves
// them (no route fragments, no Envoy resources but listener names) still
// writes nothing for an unchanged spec after a restart, writes a changed spec
// whole (what the new spec no longer has is gone from the server, which a
// merge patch from the trimmed copy would have left), and never sends the
// cache's digest annotation back. Real apiserver: the key order it returns
// Envoy JSON in is what the digest must see through.
func TestTrimmedCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	var copts cache.Options
	copts.Scheme = env.Scheme
	TrimCache(&copts)
	informers, err := cache.New(env.Config, copts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	cached, err := client.New(env.Config, client.Options{Scheme: env.Scheme, Cache: &client.CacheOptions{Reader: informers}})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Kind: "Gateway", Namespace: "ns", Name: "gw"}
	const name = "gateway.ns.gw"
	// Someone else's label and annotation, which the writer must leave alone,
	// and a digest annotation written to the server, which must not be trusted.
	obj := &v1alpha1.NodeProxyConfig{Spec: fullSpec()}
	obj.Name, obj.Labels = name, map[string]string{v1alpha1.LabelProducer: "gateway", "team": "web"}
	obj.Annotations = map[string]string{"note": "kept", annotationCachedDigest: "1:forged"}
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	seen := &v1alpha1.NodeProxyConfig{}
	waitCached(t, cached, name, seen, func() bool { return true })
	if len(seen.Spec.RouteFragments) != 0 || len(seen.Spec.FilterChainFragments) != 0 || seen.Annotations[annotationCachedDigest] == "" {
		t.Fatalf("the cache holds the config untrimmed: %+v", seen)
	}
	if got := listenerNames(seen.Spec); !reflect.DeepEqual(got, []string{"http-80"}) {
		t.Fatalf("listener names in the cache: %v", got)
	}
	if seen.Spec.NodeSelector == nil || len(seen.Spec.NodeSelector.MatchLabels) != 2 || len(seen.Spec.Redirects) != 1 {
		t.Fatalf("node selector or redirects trimmed (the verdict reads them): %+v", seen.Spec)
	}
	if d, ok := cachedDigest(seen); !ok || d == "forged" {
		t.Fatalf("the cached digest is %q (%v), not the spec's", d, ok)
	}

	// A writer that remembers nothing (a restarted producer) sees the same
	// spec through the digest. Its labels and annotation are missing, so it
	// writes once, then not again.
	w := &Writer{Client: cached, Producer: "gateway", Watched: true}
	if _, err := w.Apply(ctx, name, src, fullSpec()); err != nil {
		t.Fatal(err)
	}
	w = &Writer{Client: cached, Producer: "gateway", Watched: true}
	waitCached(t, cached, name, seen, func() bool { return seen.Annotations[AnnotationSource] != "" })
	if changed, err := w.Apply(ctx, name, src, fullSpec()); err != nil || changed {
		t.Fatalf("an unchanged spec after a restart: changed=%v err=%v", changed, err)
	}

	// A smaller spec replaces the whole one.
	next := spec(`{"match":{"prefix":"/v2"},"route":{"cluster":"b"}}`)
	next.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	if changed, err := w.Apply(ctx, name, src, next); err != nil || !changed {
		t.Fatalf("a changed spec: changed=%v err=%v", changed, err)
	}
	live := &v1alpha1.NodeProxyConfig{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, live); err != nil {
		t.Fatal(err)
	}
	if same, err := sameSpec(live.Spec, next); err != nil || !same {
		t.Fatalf("the server holds %+v, want exactly %+v (err %v)", live.Spec, next, err)
	}
	if v := live.Annotations[annotationCachedDigest]; v != "1:forged" {
		t.Errorf("the server's digest annotation is %q: the cache's was written back", v)
	}
	if live.Labels["team"] != "web" || live.Annotations["note"] != "kept" || live.Labels[v1alpha1.LabelSourceName] != "gw" || live.Annotations[AnnotationSource] != src.String() {
		t.Errorf("labels %v, annotations %v", live.Labels, live.Annotations)
	}
}

func waitCached(t *testing.T, c client.Client, name string, into *v1alpha1.NodeProxyConfig, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := c.Get(context.Background(), client.ObjectKey{Name: name}, into)
		if err == nil && ok() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in the cache as expected: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTrimConfigTwice: client-go may transform an object it already
// transformed; the digest must stay that of the whole spec, or a restarted
// producer rewrites every config it finds in place (it did: 2,020 PATCHes on
// the first pass of the gateway-controller over 2,000 unchanged routes).
func TestTrimConfigTwice(t *testing.T) {
	obj := &v1alpha1.NodeProxyConfig{Spec: fullSpec()}
	obj.Name, obj.ResourceVersion = "gateway.ns.gw", "7"
	once, err := TrimConfig(obj)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := TrimConfig(once)
	if err != nil {
		t.Fatal(err)
	}
	want, err := SpecDigest(fullSpec())
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range []any{once, twice} {
		c := o.(*v1alpha1.NodeProxyConfig)
		if got, _ := cachedDigest(c); got != want {
			t.Errorf("after %d transforms the digest is %q, want the whole spec's %q", i+1, got, want)
		}
		if same, err := sameAsCurrent(c, fullSpec()); err != nil || !same {
			t.Errorf("after %d transforms the same spec compares different (%v)", i+1, err)
		}
	}
	if _, ok := obj.Annotations[annotationCachedDigest]; ok {
		t.Error("the transform changed the object it was given")
	}
}
