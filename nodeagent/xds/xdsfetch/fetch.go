// Package xdsfetch serves a set of xDS resources through the agent's real
// Server and fetches them back the way Envoy does (xdstest.Client: LDS and CDS,
// then RDS, EDS and SDS by the names they reference), for tests on both sides of
// the producer/agent boundary. A translation passes only if every reference in
// what it produces resolves: what Envoy would wait on for ever fails the test.
package xdsfetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/nodeagent/xds"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// Fetched is what the client accepted, by type URL and resource name.
type Fetched map[string]map[string]proto.Message

// Fetch serves res, and an empty ClusterLoadAssignment for every EDS name the
// backend Services give (what the agent serves before any endpoint is ready),
// then fetches everything as Envoy would. It fails if the server refuses res or
// if any reference is still unresolved after timeout.
func Fetch(ctx context.Context, res xds.Resources, backends []v1alpha1.BackendService, timeout time.Duration) (Fetched, error) {
	dir, err := os.MkdirTemp("", "xdsfetch")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := xds.New(xds.Options{SocketPath: filepath.Join(dir, "xds.sock")})
	if err != nil {
		return nil, err
	}
	if _, err := srv.SetResources(ctx, res); err != nil {
		return nil, fmt.Errorf("the server refuses the resources: %w", err)
	}
	cla := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, b := range backends {
		for _, name := range envoykit.BackendEDSNames(b) {
			cla[name] = &endpointv3.ClusterLoadAssignment{ClusterName: name}
		}
	}
	if err := srv.SetEndpoints(cla); err != nil {
		return nil, fmt.Errorf("the server refuses the endpoints: %w", err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(srvCtx) }()
	defer func() { stop(); <-errc }()

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := xdstest.Dial(wctx, "unix://"+filepath.Join(dir, "xds.sock"), "xdsfetch")
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	if err := c.Start(); err != nil {
		return nil, err
	}
	if err := c.WaitResolved(wctx, nil); err != nil {
		return nil, err
	}
	out := Fetched{}
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType} {
		out[t] = c.State(t).Resources
	}
	return out, nil
}
