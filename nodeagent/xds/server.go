// Package xds is the node agent's xDS server: it serves the local Envoy over
// ADS (state of the world and delta) from a snapshot cache for listeners,
// clusters and secrets and linear caches for route tables and endpoints (a
// changed table or assignment is sent alone, marshalled once),
// validates everything before serving it, and tracks what each Envoy ACKed
// or NACKed so the agent can report it on its NodeProxy.
package xds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/portico-dev/portico/internal/xdsres"
)

// Options configures a Server.
type Options struct {
	// SocketPath is the Unix socket Envoy's bootstrap points to. A stale
	// socket there is removed; any other kind of file is an error.
	SocketPath string
	// SocketMode defaults to 0660, so that an Envoy running under another
	// user in the agent's group can connect.
	SocketMode fs.FileMode
	// TCPAddress optionally serves on a loopback host:port as well (for
	// debugging with a local client); non-loopback addresses are refused.
	TCPAddress string
	// ForgetProxyAfter drops a disconnected proxy from Proxies() after this
	// long. Zero means 10 minutes; negative keeps it forever.
	ForgetProxyAfter time.Duration
	// VersionBase is where snapshot versions start counting (the first is VersionBase+1).
	// The agent passes the wall clock in milliseconds so that versions keep going up across
	// restarts: an operator comparing xdsVersion before and after must never see it go back.
	VersionBase uint64
}

// Server is the agent's xDS server. Create it with New.
type Server struct {
	opts Options

	snapshots cachev3.SnapshotCache
	// routes is guarded by resMu, like served.
	routes  *routeTables
	eds     *cachev3.LinearCache
	ads     *adsService
	tracker *tracker

	// resMu serialises SetResources so that versions are handed out in the
	// order snapshots are set.
	resMu   sync.Mutex
	version uint64
	served  *cachev3.Snapshot
	// checked remembers the messages that passed validation, by identity.
	checked *xdsres.Memo

	edsMu     sync.Mutex
	endpoints map[string]*endpointv3.ClusterLoadAssignment

	lifeMu    sync.Mutex
	grpc      *grpc.Server
	listeners []net.Listener
	cancel    context.CancelFunc
	stopped   bool
}

// New builds the caches and the gRPC service; it does no I/O.
func New(opts Options) (*Server, error) {
	if opts.SocketPath == "" {
		return nil, errors.New("xds: SocketPath is required")
	}
	if opts.SocketMode == 0 {
		opts.SocketMode = 0o660
	}
	if opts.ForgetProxyAfter == 0 {
		opts.ForgetProxyAfter = 10 * time.Minute
	}
	if opts.TCPAddress != "" {
		if err := checkLoopback(opts.TCPAddress); err != nil {
			return nil, err
		}
	}
	s := &Server{
		opts: opts,
		// ads=true: answer RDS/EDS only once Envoy names every resource,
		// which is what keeps ADS updates in a safe order.
		snapshots: cachev3.NewSnapshotCache(true, singleNodeHash{}, nil),
		routes:    newRouteTables(opts.VersionBase),
		eds:       cachev3.NewLinearCache(resourcev3.EndpointType),
		tracker:   newTracker(),
		endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		version:   opts.VersionBase,
		checked:   xdsres.NewMemo(),
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return cacheFor(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return cacheFor(r.GetTypeUrl()) },
		Caches: map[string]cachev3.Cache{
			"snapshot": s.snapshots,
			"rds":      s.routes.cache,
			"eds":      s.eds,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.ads = &adsService{
		sotw:  sotwv3.NewServer(ctx, mux, s.tracker),
		delta: deltav3.NewServer(ctx, mux, s.tracker),
	}
	s.grpc = grpc.NewServer(
		// Envoy multiplexes every xDS subscription on one connection.
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, s.ads)
	return s, nil
}

// adsService serves only ADS: the agent's Envoy is bootstrapped with ADS,
// and go-control-plane's all-services server would pull in the rate-limit
// service module for nothing.
type adsService struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	sotw  sotwv3.Server
	delta deltav3.Server
}

func (a *adsService) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(st, resourcev3.AnyType)
}

func (a *adsService) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.delta.DeltaStreamHandler(st, resourcev3.AnyType)
}

func cacheFor(typeURL string) string {
	switch typeURL {
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.RouteType:
		return "rds"
	}
	return "snapshot"
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("xds: TCPAddress %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("xds: TCPAddress %q is not a loopback address", addr)
	}
	return nil
}

// Listen binds the Unix socket (and the TCP address if set). It is separate
// from Serve so that the agent fails fast on a bad path and so that clients
// can dial as soon as it returns.
func (s *Server) Listen() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.stopped {
		return errors.New("xds: server stopped")
	}
	if len(s.listeners) > 0 {
		return nil
	}
	if err := removeStaleSocket(s.opts.SocketPath); err != nil {
		return err
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.opts.SocketPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("xds: listening on %s: %w", s.opts.SocketPath, err)
	}
	ul.SetUnlinkOnClose(true)
	if err := os.Chmod(s.opts.SocketPath, s.opts.SocketMode); err != nil {
		_ = ul.Close()
		return fmt.Errorf("xds: chmod %s: %w", s.opts.SocketPath, err)
	}
	s.listeners = append(s.listeners, ul)
	if s.opts.TCPAddress != "" {
		tl, err := net.Listen("tcp", s.opts.TCPAddress)
		if err != nil {
			_ = ul.Close()
			s.listeners = nil
			return fmt.Errorf("xds: listening on %s: %w", s.opts.TCPAddress, err)
		}
		s.listeners = append(s.listeners, tl)
	}
	return nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("xds: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("xds: %s exists and is not a socket", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("xds: removing stale socket: %w", err)
	}
	return nil
}

// Addrs returns the bound addresses, Unix socket first.
func (s *Server) Addrs() []net.Addr {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	out := make([]net.Addr, 0, len(s.listeners))
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Serve listens if Listen was not called and serves until Stop.
func (s *Server) Serve() error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.lifeMu.Lock()
	listeners := s.listeners
	s.lifeMu.Unlock()
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- s.grpc.Serve(l) }()
	}
	var first error
	for range listeners {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Start serves until ctx is done and then stops gracefully, waiting up to
// five seconds for in-flight responses; it fits controller-runtime's Runnable.
func (s *Server) Start(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(stopCtx)
	return <-done
}

// Stop ends every xDS stream, lets in-flight sends finish and closes the
// listeners (removing the socket). If ctx ends first, connections are cut.
func (s *Server) Stop(ctx context.Context) {
	s.lifeMu.Lock()
	s.stopped = true
	s.lifeMu.Unlock()
	// ADS streams never end on their own, so GracefulStop would wait for
	// ever; cancelling the xDS context makes every stream handler return.
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

// Proxies returns the state of every proxy seen recently, sorted by node ID.
func (s *Server) Proxies() []ProxyState {
	forget := s.opts.ForgetProxyAfter
	if forget < 0 {
		forget = 0
	}
	s.resMu.Lock()
	defer s.resMu.Unlock()
	out := s.tracker.proxies(s.typeVersionsLocked(), forget, s.routes.holds)
	// RDS versions are the linear cache's: reported in the snapshots' numbering,
	// so a proxy's ACKed version compares with xdsVersion.
	for _, p := range out {
		if ts, ok := p.Types[resourcev3.RouteType]; ok {
			ts.Sent, ts.Acked, ts.Current = s.routes.numberedAs(ts.Sent), s.routes.numberedAs(ts.Acked), s.routes.numberedAs(ts.Current)
			if ts.LastNACK != nil {
				ts.LastNACK.Version = s.routes.numberedAs(ts.LastNACK.Version)
			}
			p.Types[resourcev3.RouteType] = ts
		}
	}
	return out
}

// Changes signals (coalesced, never blocking the server) that Proxies() may
// have changed: a stream opened or closed, an ACK or NACK arrived, or a new
// snapshot is served. The agent rate-limits its NodeProxy writes itself.
func (s *Server) Changes() <-chan struct{} { return s.tracker.changes }
