package envoyconfig

import (
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/internal/xdsres"
)

// routeClusters are the clusters the routes of rc send traffic to, in order, deduplicated.
func routeClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	add := func(n string) {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			a := r.GetRoute()
			add(a.GetCluster())
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				add(wc.GetName())
			}
			for _, m := range a.GetRequestMirrorPolicies() {
				add(m.GetCluster())
			}
		}
	}
	return out
}

// listenerClusters are the clusters a listener sends traffic to itself: through the
// route table inlined in an HTTP connection manager, or a TCP proxy.
func listenerClusters(l *listenerv3.Listener) []string {
	var out []string
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			switch {
			case tc == nil:
			case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
				if hcm := (&hcmv3.HttpConnectionManager{}); tc.UnmarshalTo(hcm) == nil && hcm.GetRouteConfig() != nil {
					out = append(out, routeClusters(hcm.GetRouteConfig())...)
				}
			case tc.MessageIs(&tcpv3.TcpProxy{}):
				if tp := (&tcpv3.TcpProxy{}); tc.UnmarshalTo(tp) == nil {
					if c := tp.GetCluster(); c != "" {
						out = append(out, c)
					}
					for _, wc := range tp.GetWeightedClusters().GetClusters() {
						out = append(out, wc.GetName())
					}
				}
			}
		}
	}
	return out
}

// secretRefs are the SDS names the resources fetch over ADS.
func secretRefs(ls []*listenerv3.Listener, cs []*clusterv3.Cluster) []string {
	var out []string
	for _, l := range ls {
		chains := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
		}
		for _, fc := range chains {
			out = append(out, xdsres.ChainSecretReferences(fc)...)
		}
	}
	for _, c := range cs {
		out = append(out, xdsres.ClusterSecretReferences(c)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// kubeSecret returns the Kubernetes Secret ("<ns>/<name>") an SDS name stands for,
// as the agent serves them: "<ns>/<name>" (key pair, or CA bundle alone) and
// "<ns>/<name>/ca.crt" (the CA bundle of a Secret that also holds a key pair).
func kubeSecret(sds string) (string, bool) {
	parts := strings.Split(sds, "/")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return sds, true
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && parts[2] == "ca.crt":
		return parts[0] + "/" + parts[1], true
	}
	return "", false
}

// backend is one Service whose endpoints the config may ask EDS for.
type backend struct {
	namespace, name string
	// ports restricts the ports it gives ("" in the set: every port); empty: any port.
	ports []string
	// needed are the port parts of the EDS names asked for ("" for "<ns>/<svc>").
	needed map[string]bool
}

// backends merges spec.services and spec.backendServices into the Services the
// config gets EDS for: Cilium serves the endpoints of redirected Services as well,
// and its circuit-breaker example relies on that.
type backends struct {
	order []string
	by    map[string]*backend
}

func (bs *backends) add(namespace, name string, ports []string) {
	if bs.by == nil {
		bs.by = map[string]*backend{}
	}
	key := namespace + "/" + name
	b := bs.by[key]
	if b == nil {
		b = &backend{namespace: namespace, name: name, needed: map[string]bool{}}
		bs.by[key] = b
		bs.order = append(bs.order, key)
		b.ports = slices.Clone(ports)
	} else if len(b.ports) > 0 {
		// One entry without a port list opens every port.
		if len(ports) == 0 {
			b.ports = nil
		} else {
			b.ports = append(b.ports, ports...)
		}
	}
}

// serves reports whether an EDS name is one a backend gives, and records it.
func (bs *backends) serves(eds string) bool {
	key, port, _ := strings.Cut(eds, ":")
	b := bs.by[key]
	if b == nil {
		return false
	}
	if port != "" && len(b.ports) > 0 && !slices.Contains(b.ports, port) {
		return false
	}
	b.needed[port] = true
	return true
}

// spec is the backendServices of the NodeProxyConfig: each backend with exactly
// the ports its EDS names need (the agent serves "<ns>/<svc>" for an entry without
// ports, "<ns>/<svc>:<port>" for each port listed, and "<ns>/<svc>" again for "").
func (bs *backends) spec() []v1alpha1.BackendService {
	out := make([]v1alpha1.BackendService, 0, len(bs.order))
	for _, key := range bs.order {
		b := bs.by[key]
		ports := make([]string, 0, len(b.needed))
		for p := range b.needed {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		switch {
		case len(ports) == 0:
			ports = slices.Clone(b.ports)
			slices.Sort(ports)
			ports = slices.Compact(ports)
		case len(ports) == 1 && ports[0] == "":
			ports = nil
		}
		out = append(out, v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Namespace: b.namespace, Name: b.name}, Ports: ports})
	}
	slices.SortFunc(out, func(a, b v1alpha1.BackendService) int {
		return strings.Compare(envoykit.EDSName(a.Namespace, a.Name, ""), envoykit.EDSName(b.Namespace, b.Name, ""))
	})
	return out
}

// edsName is what an EDS cluster asks the agent for: its service_name, or its name.
func edsName(c *clusterv3.Cluster) (string, bool) {
	if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		return "", false
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n, true
	}
	return c.GetName(), true
}
