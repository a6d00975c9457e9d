package envoyconfig

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

// TestRendersCleanly is the contract with the node agent: every accepted golden
// output, fed to the agent's own render (proxy ports for its redirect targets), is
// applied whole, with no config rejected; the agent's real xDS server accepts the
// result, and an Envoy-like client fetching it (LDS, CDS, then RDS, EDS and SDS by
// name) finds every reference resolved. Accepted here means served there.
func TestRendersCleanly(t *testing.T) {
	pair := testcerts.TLSData(t, "*.example.com")
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			g := loadCase(t, dir)
			rin := render.Input{ProxyPorts: map[string]uint16{}, Secrets: map[string]render.SecretState{}}
			port := uint16(15000)
			accepted := 0
			for i, out := range g.translate() {
				if len(out.Errors) > 0 {
					continue
				}
				for _, ref := range out.Spec.Envoy.Secrets {
					res, problem := secrets.FromKube(ref, &corev1.Secret{Type: corev1.SecretTypeTLS, Data: pair})
					if problem != nil {
						t.Fatal(problem)
					}
					rin.Secrets[ref] = render.SecretState{Resources: res}
				}
				accepted++
				npc := &v1alpha1.NodeProxyConfig{Spec: out.Spec}
				npc.Name, npc.Generation, npc.ResourceVersion = out.Name, 1, "1"
				npc.CreationTimestamp = metav1.NewTime(time.Unix(int64(1_700_000_000+i), 0))
				npc.Labels = map[string]string{v1alpha1.LabelProducer: Producer}
				for _, r := range out.Spec.Redirects {
					if _, ok := rin.ProxyPorts[r.Listener]; !ok {
						rin.ProxyPorts[r.Listener] = port
						port++
					}
				}
				rin.Configs = append(rin.Configs, npc)
			}
			if accepted == 0 {
				return
			}
			res := render.Render(rin)
			for _, r := range res.Rejected {
				t.Errorf("config %s rejected (%s): %s", r.Name, r.Reason, r.Message)
			}
			if len(res.ListenersNeedingPorts) > 0 {
				t.Errorf("listeners without proxy ports: %v", res.ListenersNeedingPorts)
			}
			if len(res.Applied) != accepted {
				t.Errorf("applied %d of %d configs", len(res.Applied), accepted)
			}
			got, err := xdsfetch.Fetch(context.Background(), res.Resources, res.BackendServices, 10*time.Second)
			if err != nil {
				t.Fatalf("served as Envoy fetches it: %v", err)
			}
			if n := len(got[resourcev3.ListenerType]); n != len(res.Resources.Listeners) {
				t.Errorf("fetched %d listeners, rendered %d", n, len(res.Resources.Listeners))
			}
			if n := len(got[resourcev3.SecretType]); n != len(res.Resources.Secrets) {
				t.Errorf("fetched %d Secrets over SDS, rendered %d", n, len(res.Resources.Secrets))
			}
		})
	}
}
