package gateway

import (
	"context"
	"path/filepath"
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

// renderCase renders a case's translation as one node running every config
// would: proxy ports for every redirected listener, real key pairs for every
// listed Secret (converted as the agent converts them).
func renderCase(t *testing.T, out Output) render.Output {
	t.Helper()
	pair := testcerts.TLSData(t, "*.example.com")
	rin := render.Input{ProxyPorts: map[string]uint16{}, Secrets: map[string]render.SecretState{}}
	port := uint16(15000)
	for i, c := range out.Configs {
		npc := &v1alpha1.NodeProxyConfig{Spec: c.Spec}
		npc.Name, npc.Generation = c.Name, 1
		npc.CreationTimestamp = metav1.NewTime(time.Unix(int64(1_700_000_000+i), 0))
		npc.Labels = map[string]string{v1alpha1.LabelProducer: Producer, v1alpha1.LabelSourceNamespace: c.Source.Namespace}
		for _, r := range c.Spec.Redirects {
			if _, ok := rin.ProxyPorts[r.Listener]; !ok {
				rin.ProxyPorts[r.Listener] = port
				port++
			}
		}
		if c.Spec.Envoy != nil {
			for _, ref := range c.Spec.Envoy.Secrets {
				res, problem := secrets.FromKube(ref, &corev1.Secret{Type: corev1.SecretTypeTLS, Data: pair})
				if problem != nil {
					t.Fatal(problem)
				}
				rin.Secrets[ref] = render.SecretState{Resources: res}
			}
		}
		rin.Configs = append(rin.Configs, npc)
	}
	return render.Render(rin)
}

// TestRendersCleanly is the contract with the node agent: every golden
// output, fed to the agent's own render, is applied whole with no config
// rejected (every Envoy field this package writes decodes strictly); the
// agent's real xDS server accepts the result, and an Envoy-like client
// fetching it (LDS, CDS, then RDS, EDS and SDS by name) finds every reference
// resolved.
func TestRendersCleanly(t *testing.T) {
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := Translate(loadCase(t, dir))
			res := renderCase(t, out)
			for _, r := range res.Rejected {
				t.Errorf("config %s rejected (%s): %s", r.Name, r.Reason, r.Message)
			}
			if len(res.ListenersNeedingPorts) > 0 {
				t.Errorf("listeners without proxy ports: %v", res.ListenersNeedingPorts)
			}
			if len(res.Applied) != len(out.Configs) {
				t.Errorf("applied %d of %d configs", len(res.Applied), len(out.Configs))
			}
			if res.FragmentsNotHere != 0 {
				t.Errorf("%d fragments for listeners no config defines", res.FragmentsNotHere)
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
