package ingress

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/testcerts"
	"github.com/portico-dev/portico/nodeagent/render"
	"github.com/portico-dev/portico/nodeagent/secrets"
	"github.com/portico-dev/portico/nodeagent/xds/xdsfetch"
)

// TestRendersCleanly is the contract with the node agent: every golden output,
// fed to the agent's own render with proxy ports for its listeners and the TLS
// Secrets it lists (real key pairs, converted as the agent converts them), is
// applied whole, with no config rejected; the agent's real xDS server accepts
// the result, and an Envoy-like client fetching it (LDS, CDS, then RDS, EDS and
// SDS by name) finds every reference resolved.
func TestRendersCleanly(t *testing.T) {
	pair := testcerts.TLSData(t, "*.example.com")
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in, opts := loadCase(t, dir)
			out := Translate(in, opts)
			rin := render.Input{ProxyPorts: map[string]uint16{}, Secrets: map[string]render.SecretState{}}
			for key := range in.Secrets {
				ref := key.String()
				res, problem := secrets.FromKube(ref, &corev1.Secret{Type: corev1.SecretTypeTLS, Data: pair})
				if problem != nil {
					t.Fatal(problem)
				}
				rin.Secrets[ref] = render.SecretState{Resources: res}
			}
			port := uint16(15000)
			for i, c := range out.Configs {
				npc := &v1alpha1.NodeProxyConfig{Spec: c.Spec}
				npc.Name, npc.Generation = c.Name, 1
				npc.CreationTimestamp = metav1.NewTime(time.Unix(int64(1_700_000_000+i), 0))
				npc.Labels = map[string]string{v1alpha1.LabelProducer: Producer}
				if c.Source != nil {
					npc.Labels[v1alpha1.LabelSourceNamespace] = c.Source.Namespace
				}
				for _, r := range c.Spec.Redirects {
					if _, ok := rin.ProxyPorts[r.Listener]; !ok {
						rin.ProxyPorts[r.Listener] = port
						port++
					}
				}
				rin.Configs = append(rin.Configs, npc)
			}
			res := render.Render(rin)
			// Two Ingresses using one backend define the same cluster
			// (testdata/shared-backend): render merges identical clusters.
			for _, r := range res.Rejected {
				t.Errorf("config %s rejected (%s): %s", r.Name, r.Reason, r.Message)
			}
			if len(res.ListenersNeedingPorts) > 0 {
				t.Errorf("listeners without proxy ports: %v", res.ListenersNeedingPorts)
			}
			if len(res.Applied) != len(out.Configs) {
				t.Errorf("applied %d of %d configs", len(res.Applied), len(out.Configs))
			}
			// Every redirect target is served on its proxy port, transparently and
			// without SO_REUSEPORT.
			for _, l := range res.Resources.Listeners {
				if !l.GetTransparent().GetValue() || l.GetEnableReusePort() == nil || l.GetEnableReusePort().GetValue() {
					t.Errorf("listener %s: transparent=%v enable_reuse_port=%v", l.GetName(), l.GetTransparent(), l.GetEnableReusePort())
				}
			}
			got, err := xdsfetch.Fetch(context.Background(), res.Resources, res.BackendServices, 10*time.Second)
			if err != nil {
				t.Fatalf("served as Envoy fetches it: %v", err)
			}
			if n := len(got[resourcev3.SecretType]); n != len(res.Resources.Secrets) {
				t.Errorf("fetched %d Secrets over SDS, rendered %d", n, len(res.Resources.Secrets))
			}
		})
	}
}

// TestRenderedOrder checks the precedence keys through the agent's merge: in the
// rendered route table the path types come in the Ingress spec's order (Exact,
// regex, Prefix longest first, "/" last) whatever their order in the Ingress.
func TestRenderedOrder(t *testing.T) {
	in, opts := loadCase(t, filepath.Join("testdata", "path-types"))
	out := Translate(in, opts)
	rin := render.Input{ProxyPorts: map[string]uint16{SharedConfigName + "/http": 15000}}
	for _, c := range out.Configs {
		npc := &v1alpha1.NodeProxyConfig{Spec: c.Spec}
		npc.Name = c.Name
		rin.Configs = append(rin.Configs, npc)
	}
	res := render.Render(rin)
	if len(res.Rejected) > 0 || len(res.Resources.Routes) != 1 {
		t.Fatalf("rejected %v, %d route tables", res.Rejected, len(res.Resources.Routes))
	}
	var got []string
	for _, vh := range res.Resources.Routes[0].GetVirtualHosts() {
		if vh.GetName() != "*" {
			continue
		}
		for _, r := range vh.GetRoutes() {
			m := r.GetMatch()
			got = append(got, m.GetPath()+m.GetSafeRegex().GetRegex()+m.GetPathSeparatedPrefix()+m.GetPrefix())
		}
	}
	want := []string{"/healthz", "/api/v[0-9]+/.*", "/foo/bar", "/foo", "/"}
	if !slices.Equal(got, want) {
		t.Errorf("route order %q, want %q", got, want)
	}
}
