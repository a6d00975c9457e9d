// Package xdstest provides an ADS client that talks to an xDS server the way
// Envoy does, for tests that cannot run a real Envoy: it subscribes to
// clusters and listeners (wildcard), follows them to the route configurations,
// endpoints and secrets they name (RDS, EDS and SDS by name), ACKs what it
// accepts and NACKs what a test tells it to reject.
//
// Unresolved reports every name the client subscribed to and never received:
// Envoy would keep such a listener or cluster warming for ever (the ADS snapshot
// cache answers a by-name request only once it can answer every name), which is
// how a TLS listener with a Secret nobody serves once froze a node's config while
// every test that never asked for Secrets passed.
package xdstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/portico-dev/portico/internal/xdsres"
)

// RejectFunc decides whether to NACK a response: a non-empty return is sent
// as error_detail.message, the way Envoy reports a config it cannot apply.
type RejectFunc func(typeURL string, resp *discoveryv3.DiscoveryResponse) string

// State is the client's view of one resource type.
type State struct {
	// Version is the last accepted version_info.
	Version string
	// Resources holds the accepted resources by name.
	Resources map[string]proto.Message
	// Responses counts every response received for the type.
	Responses int
	// Nacks lists the messages of every NACK sent, oldest first.
	Nacks []string
	// Subscribed is the current resource_names (nil means wildcard).
	Subscribed []string
}

type typeState struct {
	State
	nonce string
}

// Client is an Envoy-like state-of-the-world ADS client.
type Client struct {
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	cancel context.CancelFunc

	sendMu   sync.Mutex
	nodeSent bool
	started  sync.Once

	mu      sync.Mutex
	types   map[string]*typeState
	reject  RejectFunc
	updated chan struct{}
	err     error
	done    chan struct{}
}

// Dial connects to target ("unix:///path/to/sock" or "host:port") and opens
// the ADS stream; call Start to subscribe.
func Dial(ctx context.Context, target, nodeID string) (*Client, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	// The stream outlives ctx, which only bounds the wait for the server
	// (WaitForReady: like Envoy, keep trying while the agent starts).
	sctx, cancel := context.WithCancel(context.Background())
	stopWait := context.AfterFunc(ctx, cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx, grpc.WaitForReady(true))
	if !stopWait() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		_ = conn.Close()
		return nil, err
	}
	return &Client{
		conn:    conn,
		stream:  stream,
		node:    &corev3.Node{Id: nodeID, Cluster: "portico-test"},
		cancel:  cancel,
		types:   map[string]*typeState{},
		updated: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// SetReject installs (or with nil removes) the function deciding NACKs.
func (c *Client) SetReject(fn RejectFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reject = fn
}

// Start sends the initial CDS and LDS wildcard requests, as Envoy does, and
// processes responses in the background until Close.
func (c *Client) Start() error {
	c.started.Do(func() { go c.loop() })
	if err := c.Subscribe(resourcev3.ClusterType, nil); err != nil {
		return err
	}
	return c.Subscribe(resourcev3.ListenerType, nil)
}

// Subscribe sets the resource names wanted for typeURL (nil: wildcard) and
// sends the request, carrying the type's current version and nonce.
func (c *Client) Subscribe(typeURL string, names []string) error {
	c.mu.Lock()
	ts := c.typeLocked(typeURL)
	ts.Subscribed = names
	req := c.requestLocked(typeURL, ts)
	c.mu.Unlock()
	return c.send(req)
}

func (c *Client) typeLocked(typeURL string) *typeState {
	ts, ok := c.types[typeURL]
	if !ok {
		ts = &typeState{State: State{Resources: map[string]proto.Message{}}}
		c.types[typeURL] = ts
	}
	return ts
}

func (c *Client) requestLocked(typeURL string, ts *typeState) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{
		TypeUrl:       typeURL,
		VersionInfo:   ts.Version,
		ResponseNonce: ts.nonce,
		ResourceNames: slices.Clone(ts.Subscribed),
	}
}

// send attaches the node to the first request only, like Envoy with
// set_node_on_first_message_only, so the server must remember it.
func (c *Client) send(req *discoveryv3.DiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if !c.nodeSent {
		req.Node = c.node
		c.nodeSent = true
	}
	return c.stream.Send(req)
}

func (c *Client) loop() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.broadcastLocked()
			c.mu.Unlock()
			return
		}
		if err := c.handle(resp); err != nil {
			c.mu.Lock()
			c.err = err
			c.broadcastLocked()
			c.mu.Unlock()
			return
		}
	}
}

func (c *Client) handle(resp *discoveryv3.DiscoveryResponse) error {
	decoded := make(map[string]proto.Message, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decoding %s: %w", a.GetTypeUrl(), err)
		}
		decoded[cachev3.GetResourceName(m)] = m
	}

	c.mu.Lock()
	typeURL := resp.GetTypeUrl()
	ts := c.typeLocked(typeURL)
	ts.nonce = resp.GetNonce()
	ts.Responses++
	var msg string
	if c.reject != nil {
		msg = c.reject(typeURL, resp)
	}
	var follow []*discoveryv3.DiscoveryRequest
	if msg != "" {
		ts.Nacks = append(ts.Nacks, msg)
	} else {
		ts.Version = resp.GetVersionInfo()
		if cachev3.ResourceRequiresFullStateInSotw(typeURL) {
			ts.Resources = decoded
		} else {
			// RDS and EDS responses may carry only what changed.
			maps.Copy(ts.Resources, decoded)
		}
		follow = c.followLocked(typeURL, ts)
	}
	req := c.requestLocked(typeURL, ts)
	if msg != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}
	}
	c.broadcastLocked()
	c.mu.Unlock()

	if err := c.send(req); err != nil {
		return err
	}
	for _, r := range follow {
		if err := c.send(r); err != nil {
			return err
		}
	}
	return nil
}

// followLocked subscribes, by name, to what the resources of the type just
// accepted reference, as Envoy does when it warms them: the route
// configurations of RDS listeners, the endpoints of EDS clusters, and the
// secrets of SDS transport sockets (listeners and clusters both name those, so
// the subscription is their union). A subscription is only sent when its set of
// names changed; resources no longer named are dropped, as Envoy drops them.
func (c *Client) followLocked(typeURL string, _ *typeState) []*discoveryv3.DiscoveryRequest {
	var deps []string
	switch typeURL {
	case resourcev3.ClusterType:
		deps = []string{resourcev3.EndpointType, resourcev3.SecretType}
	case resourcev3.ListenerType:
		deps = []string{resourcev3.RouteType, resourcev3.SecretType}
	default:
		return nil
	}
	var out []*discoveryv3.DiscoveryRequest
	for _, depType := range deps {
		want := c.referencedLocked(depType)
		dep := c.typeLocked(depType)
		if slices.Equal(want, dep.Subscribed) || (len(want) == 0 && dep.Subscribed == nil) {
			continue
		}
		if want == nil {
			want = []string{} // unsubscribe from everything, not wildcard
		}
		dep.Subscribed = want
		for name := range dep.Resources {
			if !slices.Contains(want, name) {
				delete(dep.Resources, name)
			}
		}
		out = append(out, c.requestLocked(depType, dep))
	}
	return out
}

// referencedLocked lists the names of depType that the accepted listeners and
// clusters reference, sorted.
func (c *Client) referencedLocked(depType string) []string {
	names := map[string]bool{}
	listeners := c.typeLocked(resourcev3.ListenerType).Resources
	clusters := c.typeLocked(resourcev3.ClusterType).Resources
	switch depType {
	case resourcev3.EndpointType:
		for _, m := range clusters {
			cl := m.(*clusterv3.Cluster)
			if cl.GetType() != clusterv3.Cluster_EDS {
				continue
			}
			if sn := cl.GetEdsClusterConfig().GetServiceName(); sn != "" {
				names[sn] = true
			} else {
				names[cl.GetName()] = true
			}
		}
	case resourcev3.RouteType:
		for _, m := range listeners {
			for _, fc := range chainsOf(m.(*listenerv3.Listener)) {
				for _, f := range fc.GetFilters() {
					if hcm := resourcev3.GetHTTPConnectionManager(f); hcm != nil && hcm.GetRds() != nil {
						names[hcm.GetRds().GetRouteConfigName()] = true
					}
				}
			}
		}
	case resourcev3.SecretType:
		for _, m := range listeners {
			for _, fc := range chainsOf(m.(*listenerv3.Listener)) {
				for _, n := range xdsres.ChainSecretReferences(fc) {
					names[n] = true
				}
			}
		}
		for _, m := range clusters {
			for _, n := range xdsres.ClusterSecretReferences(m.(*clusterv3.Cluster)) {
				names[n] = true
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(names))
}

func chainsOf(l *listenerv3.Listener) []*listenerv3.FilterChain {
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clip(chains), d)
	}
	return chains
}

// Unresolved lists, as "<type>/<name>", every resource the accepted listeners
// and clusters reference that the client has not received: what Envoy would be
// waiting on. Right after a change it may be non-empty for the time of one
// round trip; WaitResolved waits for it to empty.
func (c *Client) Unresolved() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unresolvedLocked()
}

func (c *Client) unresolvedLocked() []string {
	var out []string
	for _, t := range []string{resourcev3.RouteType, resourcev3.EndpointType, resourcev3.SecretType} {
		have := c.typeLocked(t).Resources
		for _, name := range c.referencedLocked(t) {
			if _, ok := have[name]; !ok {
				out = append(out, shortType(t)+"/"+name)
			}
		}
	}
	return out
}

func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.RouteType:
		return "RDS"
	case resourcev3.EndpointType:
		return "EDS"
	case resourcev3.SecretType:
		return "SDS"
	}
	return typeURL
}

// WaitResolved waits until every listener and cluster type has been received
// at least once and nothing they reference is missing, and then also cond
// (nil: none). On timeout the error names what is still unresolved, so a test
// says which reference Envoy would wait on for ever.
func (c *Client) WaitResolved(ctx context.Context, cond func(*Client) bool) error {
	err := c.WaitFor(ctx, func(cl *Client) bool {
		cl.mu.Lock()
		ready := cl.typeLocked(resourcev3.ListenerType).Responses > 0 &&
			cl.typeLocked(resourcev3.ClusterType).Responses > 0 && len(cl.unresolvedLocked()) == 0
		cl.mu.Unlock()
		return ready && (cond == nil || cond(cl))
	})
	if err != nil {
		if u := c.Unresolved(); len(u) > 0 {
			return fmt.Errorf("%w; unresolved references: %v", err, u)
		}
	}
	return err
}

func (c *Client) broadcastLocked() {
	close(c.updated)
	c.updated = make(chan struct{})
}

// State returns a copy of the client's state for typeURL.
func (c *Client) State(typeURL string) State {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts, ok := c.types[typeURL]
	if !ok {
		return State{Resources: map[string]proto.Message{}}
	}
	out := ts.State
	out.Resources = maps.Clone(ts.Resources)
	out.Nacks = slices.Clone(ts.Nacks)
	out.Subscribed = slices.Clone(ts.Subscribed)
	return out
}

// Err returns the error that ended the stream, if it ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// WaitFor blocks until cond holds, checking it after every response. It
// fails if ctx ends or the stream breaks first.
func (c *Client) WaitFor(ctx context.Context, cond func(*Client) bool) error {
	for {
		c.mu.Lock()
		ch, err := c.updated, c.err
		c.mu.Unlock()
		if cond(c) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("xds stream ended: %w", err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for xDS state: %w", ctx.Err())
		}
	}
}

// Close ends the stream and the connection.
func (c *Client) Close() error {
	c.cancel()
	err := c.conn.Close()
	// Without Start there is no loop to wait for.
	c.started.Do(func() { close(c.done) })
	<-c.done
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// EndpointAddresses are the "ip:port" of every endpoint of cla, in the order served:
// what a test compares with a Service's ready endpoints.
func EndpointAddresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	return out
}
