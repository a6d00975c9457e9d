package render

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/portico-dev/portico/nodeagent/xds/xdsfetch"
)

// TestServedAsEnvoyFetches serves every golden output through the agent's real
// xDS server and fetches it as Envoy does: the server accepts what render
// returns (so a render can never freeze the node's snapshot), and every route
// table, endpoint set and Secret a listener or cluster names arrives.
func TestServedAsEnvoyFetches(t *testing.T) {
	for _, dir := range cases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := Render(loadInput(t, dir))
			got, err := xdsfetch.Fetch(context.Background(), out.Resources, out.BackendServices, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if n, want := len(got[resourcev3.ListenerType]), len(out.Resources.Listeners); n != want {
				t.Errorf("fetched %d listeners, rendered %d", n, want)
			}
			if n, want := len(got[resourcev3.SecretType]), len(out.Resources.Secrets); n != want {
				t.Errorf("fetched %d secrets, rendered %d", n, want)
			}
		})
	}
}
