package xds

import (
	"context"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// ProxyState is what the agent knows about one Envoy (one node ID).
type ProxyState struct {
	NodeID  string
	Cluster string
	// Connected is true while at least one xDS stream from this node is open.
	Connected bool
	Streams   int
	// ConnectedSince is when the current run of open streams began;
	// DisconnectedAt is when the last one closed (zero while connected).
	ConnectedSince time.Time
	DisconnectedAt time.Time
	// Types is keyed by type URL, one entry per type the proxy subscribed to.
	Types map[string]TypeState
}

// TypeState is the ACK/NACK state of one resource type on one proxy.
type TypeState struct {
	TypeURL string
	// Sent is the last version sent, Acked the last one Envoy accepted.
	Sent    string
	Acked   string
	AckedAt time.Time
	// Current is the version the server serves now for this type; empty
	// for EDS, whose linear cache bumps its version for changes a given
	// proxy may not subscribe to. For RDS it is the version of the last
	// change to a table, in the snapshots' numbering like Sent and Acked.
	Current string
	// InSync is Acked == Current for types that have a Current; for RDS,
	// Acked at or past Current (removing a table sends nothing).
	InSync bool
	// LastNACK is Envoy's most recent rejection, cleared once Envoy ACKs a
	// response sent after the rejected one.
	LastNACK *NACK
}

// NACK is one rejection by Envoy.
type NACK struct {
	// Version is the version Envoy rejected (not the one it kept).
	Version string
	// Message is Envoy's error_detail.message, verbatim.
	Message string
	Code    int32
	At      time.Time
}

type streamKey struct {
	delta bool
	id    int64
}

type sentResponse struct {
	version string
	seq     uint64
}

type streamState struct {
	node string
	// pending holds the responses not yet ACKed or NACKed, per type URL and
	// nonce, so that a reply is matched to the version it answers.
	pending map[string]map[string]sentResponse
	latest  map[string]string
}

type nodeState struct {
	ProxyState
	nackSeq map[string]uint64
	types   map[string]*TypeState
}

// maxPending bounds per-type nonce memory; Envoy answers every response,
// so more than a few outstanding ones means the rest are stale anyway.
const maxPending = 16

// tracker implements go-control-plane's server callbacks to follow every
// stream's ACKs and NACKs. All callbacks run on stream goroutines.
type tracker struct {
	mu      sync.Mutex
	seq     uint64
	streams map[streamKey]*streamState
	nodes   map[string]*nodeState
	changes chan struct{}
	now     func() time.Time
}

var (
	_ sotwv3.Callbacks  = (*tracker)(nil)
	_ deltav3.Callbacks = (*tracker)(nil)
)

func newTracker() *tracker {
	return &tracker{
		streams: map[streamKey]*streamState{},
		nodes:   map[string]*nodeState{},
		changes: make(chan struct{}, 1),
		now:     time.Now,
	}
}

// notify never blocks: one pending signal stands for any number of changes.
func (t *tracker) notify() {
	select {
	case t.changes <- struct{}{}:
	default:
	}
}

func (t *tracker) open(k streamKey) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[k] = &streamState{pending: map[string]map[string]sentResponse{}, latest: map[string]string{}}
	return nil
}

func (t *tracker) closed(k streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[k]
	delete(t.streams, k)
	if !ok || st.node == "" {
		return
	}
	n := t.nodes[st.node]
	n.Streams--
	if n.Streams == 0 {
		n.Connected = false
		n.DisconnectedAt = t.now()
	}
	t.notify()
}

// attach binds a stream to its node on the first request carrying one.
func (t *tracker) attach(st *streamState, node *corev3.Node) {
	if st.node != "" || node == nil {
		return
	}
	st.node = node.GetId()
	n, ok := t.nodes[st.node]
	if !ok {
		n = &nodeState{
			ProxyState: ProxyState{NodeID: st.node},
			nackSeq:    map[string]uint64{},
			types:      map[string]*TypeState{},
		}
		t.nodes[st.node] = n
	}
	n.Cluster = node.GetCluster()
	if n.Streams == 0 {
		n.Connected = true
		n.ConnectedSince = t.now()
		n.DisconnectedAt = time.Time{}
	}
	n.Streams++
}

// request records what a request says about earlier responses and returns
// the version it NACKed, if any.
func (t *tracker) request(k streamKey, node *corev3.Node, typeURL, version, nonce string, errDetail *rpcstatus.Status) (nacked string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[k]
	if !ok {
		return ""
	}
	t.attach(st, node)
	if st.node == "" || typeURL == "" {
		return ""
	}
	n := t.nodes[st.node]
	ts, ok := n.types[typeURL]
	if !ok {
		ts = &TypeState{TypeURL: typeURL}
		n.types[typeURL] = ts
	}
	if nonce == "" {
		// A first request after reconnecting carries what Envoy still runs.
		if version != "" && ts.Acked == "" {
			ts.Acked = version
		}
		t.notify()
		return ""
	}
	sent, ok := st.pending[typeURL][nonce]
	if !ok {
		return ""
	}
	for nc, p := range st.pending[typeURL] {
		if p.seq <= sent.seq {
			delete(st.pending[typeURL], nc)
		}
	}
	now := t.now()
	if errDetail != nil {
		ts.LastNACK = &NACK{Version: sent.version, Message: errDetail.GetMessage(), Code: errDetail.GetCode(), At: now}
		n.nackSeq[typeURL] = sent.seq
		nacked = sent.version
	} else {
		ts.Acked, ts.AckedAt = sent.version, now
		if ts.LastNACK != nil && n.nackSeq[typeURL] < sent.seq {
			ts.LastNACK = nil
		}
	}
	t.notify()
	if st.latest[typeURL] != nonce {
		return ""
	}
	return nacked
}

func (t *tracker) response(k streamKey, typeURL, version, nonce string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[k]
	if !ok {
		return
	}
	t.seq++
	p := st.pending[typeURL]
	if p == nil {
		p = map[string]sentResponse{}
		st.pending[typeURL] = p
	}
	if len(p) >= maxPending {
		var oldest string
		for nc, r := range p {
			if oldest == "" || r.seq < p[oldest].seq {
				oldest = nc
			}
		}
		delete(p, oldest)
	}
	p[nonce] = sentResponse{version: version, seq: t.seq}
	st.latest[typeURL] = nonce
	if n := t.nodes[st.node]; n != nil {
		if ts := n.types[typeURL]; ts != nil {
			ts.Sent = version
		}
	}
}

// proxies copies the state out, forgetting nodes disconnected for longer
// than forget (0 keeps them forever).
// holdsRoutes reports whether a proxy that ACKed the given RDS version holds every
// served table: RDS versions are not compared for equality (see routeTables).
func (t *tracker) proxies(current map[string]string, forget time.Duration, holdsRoutes func(acked string) bool) []ProxyState {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	out := make([]ProxyState, 0, len(t.nodes))
	for id, n := range t.nodes {
		if forget > 0 && !n.Connected && now.Sub(n.DisconnectedAt) > forget {
			delete(t.nodes, id)
			continue
		}
		p := n.ProxyState
		p.Types = make(map[string]TypeState, len(n.types))
		for url, ts := range n.types {
			c := *ts
			if ts.LastNACK != nil {
				nack := *ts.LastNACK
				c.LastNACK = &nack
			}
			c.Current = current[url]
			c.InSync = c.Current != "" && c.Acked == c.Current
			if url == resourcev3.RouteType {
				c.InSync = c.Current != "" && holdsRoutes(c.Acked)
			}
			p.Types[url] = c
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

func (t *tracker) OnStreamOpen(_ context.Context, id int64, _ string) error {
	return t.open(streamKey{id: id})
}

func (t *tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.closed(streamKey{id: id}) }

func (t *tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	nacked := t.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail())
	if nacked != "" {
		// A NACK carries the version Envoy kept, and the snapshot cache
		// answers any version other than the current one at once, which
		// would resend the rejected config forever. Presenting the rejected
		// version makes the cache wait for a new one instead.
		req.VersionInfo = nacked
	}
	return nil
}

func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.response(streamKey{id: id}, req.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
}

func (t *tracker) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	return t.open(streamKey{delta: true, id: id})
}

func (t *tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	t.closed(streamKey{delta: true, id: id})
}

func (t *tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	t.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), "", req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (t *tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.response(streamKey{delta: true, id: id}, req.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
}
