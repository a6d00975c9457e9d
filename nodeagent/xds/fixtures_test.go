package xds

import (
	"context"
	"github.com/portico-dev/portico/internal/xdsres/fixture"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// shortSocketPath keeps the path under the 108-byte sun_path limit, which
// t.TempDir() can exceed with long test names.
func shortSocketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "xds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "xds.sock")
}

func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.SocketPath == "" {
		opts.SocketPath = shortSocketPath(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func dial(t testing.TB, s *Server, nodeID string) *xdstest.Client {
	t.Helper()
	c, err := xdstest.Dial(waitCtx(t), "unix://"+s.opts.SocketPath, nodeID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitProxy polls Proxies() until cond holds for nodeID, driven by Changes().
func waitProxy(t testing.TB, s *Server, nodeID string, cond func(ProxyState) bool) ProxyState {
	t.Helper()
	ctx := waitCtx(t)
	for {
		for _, p := range s.Proxies() {
			if p.NodeID == nodeID && cond(p) {
				return p
			}
		}
		select {
		case <-s.Changes():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("proxy %s never reached the expected state; have %+v", nodeID, s.Proxies())
		}
	}
}

// baseConfig is fixture.Base as Resources.
func baseConfig(t testing.TB, routes int, tag string) Resources {
	var r Resources
	r.Listeners, r.Routes, r.Clusters = fixture.Base(t, routes, tag)
	return r
}
