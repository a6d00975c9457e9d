// Package standin plays Envoy's part on a node where no Envoy runs (the e2e suite, the
// demo): it fetches xDS from the node's agent with the Envoy-like ADS client
// (nodeagent/xds/xdstest), which acknowledges like Envoy, and opens every redirected
// listener the agent serves, transparent and without SO_REUSEPORT, on its proxy port
// inside the node's network namespace. Connections the eBPF redirect hands it are
// answered: an HTTP request with what Envoy's routing would pick (when a Router is
// set) and where the request arrived; anything else is echoed, so that a test can
// keep a connection open across faults and see that it still carries data.
//
// Like Envoy, it keeps its listeners (and their connections) while the agent is away,
// and reconnects to the agent's socket until it is back.
package standin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/nodeagent/xds/xdstest"
)

// Router answers which cluster Envoy would send req to, given the listener it arrived
// on and the xDS the proxy holds ("" and an error when no route matches).
type Router func(ads *xdstest.Client, listener string, req Request) (cluster string, err error)

// Request is what a Router sees of an HTTP request.
type Request struct {
	Method, Host, Path string
	Header             map[string][]string
}

// Proxy is the stand-in for one node's Envoy.
type Proxy struct {
	Node   string
	host   *netlab.Host
	socket string
	router Router
	// Accepted receives every accepted connection's listener and addresses (dropped
	// when nobody reads).
	Accepted chan Accepted

	mu  sync.Mutex
	ads *xdstest.Client
	// held is the client whose state the proxy serves with: the current one once it
	// is warm (every reference resolved), else the last one that was. Like Envoy, the
	// proxy keeps serving its last config while the agent is away.
	held      *xdstest.Client
	listeners map[netip.AddrPort]*served
	errs      []string
	cancel    context.CancelFunc
	done      chan struct{}
}

// Accepted describes one connection the proxy accepted.
type Accepted struct {
	Listener      string
	Local, Remote netip.AddrPort
}

type served struct {
	name string
	l    *Listener
}

// Start runs the stand-in for node in host h, fetching xDS from the agent's Unix
// socket. router may be nil (HTTP requests are then answered without a cluster).
func Start(h *netlab.Host, socket, node string, router Router) *Proxy {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{Node: node, host: h, socket: socket, router: router, Accepted: make(chan Accepted, 256),
		listeners: map[netip.AddrPort]*served{}, cancel: cancel, done: make(chan struct{})}
	go p.run(ctx)
	return p
}

// ADS is the current ADS client (nil while not connected): what Envoy holds now.
func (p *Proxy) ADS() *xdstest.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ads
}

// WaitResolved waits until the proxy is connected and xdstest's WaitResolved holds
// with cond, across reconnects.
func (p *Proxy) WaitResolved(ctx context.Context, cond func(*xdstest.Client) bool) error {
	for {
		ads := p.ADS()
		if ads != nil {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			err := ads.WaitResolved(wctx, cond)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy of %s not connected: %w", p.Node, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ports are the proxy ports the stand-in listens on, by listener name.
func (p *Proxy) Ports() map[string][]netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]netip.AddrPort{}
	for a, s := range p.listeners {
		out[s.name] = append(out[s.name], a)
	}
	return out
}

// Errors are the listeners it could not open, with why.
func (p *Proxy) Errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

// Close stops fetching and closes every listener and connection.
func (p *Proxy) Close() {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, s := range p.listeners {
		s.close()
		delete(p.listeners, a)
	}
}

func (p *Proxy) run(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		if _, err := os.Stat(p.socket); err != nil {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ads, err := xdstest.Dial(dctx, "unix://"+p.socket, "envoy-"+p.Node)
		cancel()
		if err == nil {
			if err = ads.Start(); err != nil {
				_ = ads.Close()
			}
		}
		if err != nil {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.ads = ads
		p.mu.Unlock()
		// Follow every response until the stream ends (the agent went away) or Close.
		_ = ads.WaitFor(ctx, func(c *xdstest.Client) bool { p.sync(c); return false })
		p.mu.Lock()
		p.ads = nil
		p.mu.Unlock()
		_ = ads.Close()
		sleep(ctx, 100*time.Millisecond)
	}
}

// sync opens the loopback addresses of the served listeners and closes those no
// longer served, once the client is warm (Envoy applies a listener only when what it
// references has arrived). A listener whose address is not loopback is not a
// redirect target: Envoy would bind it on the node, which the stand-in has no reason
// to do.
func (p *Proxy) sync(c *xdstest.Client) {
	if c.State(resourcev3.ListenerType).Responses == 0 || c.State(resourcev3.ClusterType).Responses == 0 || len(c.Unresolved()) > 0 {
		return
	}
	want := map[netip.AddrPort]string{}
	for name, m := range c.State(resourcev3.ListenerType).Resources {
		l, ok := m.(*listenerv3.Listener)
		if !ok {
			continue
		}
		addrs := []*listenerv3.AdditionalAddress{{Address: l.GetAddress()}}
		addrs = append(addrs, l.GetAdditionalAddresses()...)
		for _, a := range addrs {
			sa := a.GetAddress().GetSocketAddress()
			ip, err := netip.ParseAddr(sa.GetAddress())
			if err != nil || !ip.IsLoopback() {
				continue
			}
			want[netip.AddrPortFrom(ip, uint16(sa.GetPortValue()))] = name
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = c
	for a, s := range p.listeners {
		if want[a] != s.name {
			s.close()
			delete(p.listeners, a)
		}
	}
	for a, name := range want {
		if _, ok := p.listeners[a]; ok {
			continue
		}
		ln, err := p.host.ListenTransparent(a)
		if err != nil {
			p.errs = append(p.errs, fmt.Sprintf("listener %s on %s: %v", name, a, err))
			continue
		}
		p.listeners[a] = &served{name: name, l: serve(ln, p.Node, name, p.routeFor(name), p.Accepted)}
	}
}

func (s *served) close() { s.l.Close() }

// routeFor asks the Router about requests on listener, with the xDS held at the time.
func (p *Proxy) routeFor(listener string) func(Request) (string, error) {
	if p.router == nil {
		return nil
	}
	return func(req Request) (string, error) {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held == nil {
			return "", errors.New("no config received from the agent yet")
		}
		return p.router(held, listener, req)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ErrNoRoute is what a Router returns when no route matches (Envoy answers 404).
var ErrNoRoute = errors.New("no route matches")
