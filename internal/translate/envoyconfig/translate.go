// Package envoyconfig translates an EnvoyConfig or ClusterEnvoyConfig into its
// NodeProxyConfig, and decides whether it is acceptable. It is pure (no client calls):
// the admission webhook and the controller call the same Translate on the same inputs,
// so a config the webhook refuses ends as Accepted=False with the same message when
// the webhook is off, and a config it accepts is one the node agents serve.
//
// What it does, in order:
//   - decodes every resource strictly (internal/xdsres.Decode: an unknown @type or
//     field is an error naming the resource's index);
//   - qualifies names as Cilium does (see qualifier) and fills in the ADS config
//     sources Cilium fills in, then refuses names defined twice after qualification;
//   - resolves references inside the config: an RDS name needs a RouteConfiguration
//     here, a route needs a Cluster here or a backend Service (for which it writes
//     the EDS cluster itself), an EDS cluster needs a backend Service giving its
//     EDS name, an SDS name needs a Secret here or names a Kubernetes Secret;
//   - validates everything as the agent will (xdsres.Validate: protoc-gen-validate
//     rules also inside typed configs, and the references the ADS cache needs);
//   - turns spec.services into redirects of the Services' frontends (ClusterIPs,
//     external IPs, load balancer ingress IPs) into the named listener;
//   - refuses a result over MaxConfigBytes.
//
// Checks across configs (a listener port bound by two configs on the same nodes) need
// the other configs and are in conflicts.go.
package envoyconfig

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/envoykit"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/internal/xdsres"
)

// Producer is the portico.dev/producer label of the configs made here.
const Producer = "envoyconfig"

// Source kinds.
const (
	KindEnvoyConfig        = "EnvoyConfig"
	KindClusterEnvoyConfig = "ClusterEnvoyConfig"
)

// MaxConfigBytes bounds the NodeProxyConfig one config translates to. etcd refuses
// objects over 1.5 MiB, silently for the user (Cilium's configs over it stop
// updating, cilium/cilium#39974); refusing at 1 MiB leaves room for metadata and
// status and says which config to split.
const MaxConfigBytes = 1 << 20

// Input is one config and the Services its spec.services name.
type Input struct {
	// Kind is KindEnvoyConfig or KindClusterEnvoyConfig.
	Kind string
	// Namespace is "" for a ClusterEnvoyConfig.
	Namespace, Name string
	Spec            *v1alpha1.EnvoyConfigSpec
	// Services are the Services of spec.services that exist.
	Services map[types.NamespacedName]*corev1.Service
}

// Output is the translation of one config.
type Output struct {
	// Name is the NodeProxyConfig's name.
	Name string
	// Spec is valid only when Errors is empty.
	Spec v1alpha1.NodeProxyConfigSpec
	// Errors make the config unacceptable: the webhook refuses it, the controller
	// writes no NodeProxyConfig and sets Accepted=False with them.
	Errors field.ErrorList
	// Warnings are not errors (a Service that does not exist yet).
	Warnings []string
	// Ports are the addresses its listeners bind on the nodes (see conflicts.go).
	Ports []PortClaim
}

// ConfigName is the NodeProxyConfig name of a config.
func ConfigName(kind, namespace, name string) string {
	return npcwriter.NameFor(npcwriter.Source{Kind: kind, Namespace: namespace, Name: name})
}

var resourcesPath = field.NewPath("spec", "resources")

// decoded are a config's resources after decoding and qualification.
type decoded struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	secrets   []*tlsv3.Secret
	// index maps "<kind>/<qualified name>" to the resource's index in spec.resources.
	index map[string]int
	// order is every resource in spec order, for the output.
	order []xdsres.Decoded
}

// Translate translates one config. It never fails: what is wrong is in Errors.
func Translate(in Input) Output {
	out := Output{Name: ConfigName(in.Kind, in.Namespace, in.Name)}
	q := qualifier{namespace: in.Namespace, config: in.Name}
	d, errs := decode(q, in.Spec.Resources)
	bs, berrs := collectBackends(in)
	errs = append(errs, berrs...)

	synthesized, rerrs := resolveClusters(d, &bs)
	errs = append(errs, rerrs...)
	secrets, stubs, serrs := resolveSecrets(in, d)
	errs = append(errs, serrs...)

	all := xdsres.Resources{Listeners: d.listeners, Routes: d.routes,
		Clusters: append(slices.Clip(d.clusters), synthesized...), Secrets: append(slices.Clip(d.secrets), stubs...)}
	for _, e := range xdsres.Validate(all) {
		path := resourcesPath
		if i, ok := d.index[e.Kind+"/"+e.Name]; ok {
			path = resourcesPath.Index(i)
		}
		errs = append(errs, field.Invalid(path, e.Kind+" "+e.Name, e.Message))
	}

	redirects, targets, rwarn, rerrs2 := redirectServices(in, d)
	errs = append(errs, rerrs2...)
	out.Warnings = rwarn
	out.Ports = portClaims(d, targets)
	if len(errs) > 0 {
		out.Errors = dedupe(errs)
		return out
	}

	resources := make([]v1alpha1.EnvoyResource, 0, len(d.order)+len(synthesized))
	for _, r := range d.order {
		resources = append(resources, encode(r))
	}
	for _, c := range synthesized {
		resources = append(resources, encode(xdsres.Decoded{Kind: xdsres.KindCluster, Name: c.GetName(), Message: c}))
	}
	out.Spec = v1alpha1.NodeProxyConfigSpec{
		NodeSelector: in.Spec.NodeSelector.DeepCopy(),
		Redirects:    redirects,
		Envoy: &v1alpha1.EnvoyResources{
			Resources:       resources,
			BackendServices: bs.spec(),
			Secrets:         secrets,
		},
	}
	if raw, err := json.Marshal(out.Spec); err != nil || len(raw) > MaxConfigBytes {
		out.Errors = field.ErrorList{field.Invalid(field.NewPath("spec"), fmt.Sprintf("%d bytes", len(raw)),
			fmt.Sprintf("the NodeProxyConfig this config translates to would be over the %d-byte limit (etcd refuses large objects); split it into several configs", MaxConfigBytes))}
		out.Spec = v1alpha1.NodeProxyConfigSpec{}
	}
	return out
}

// decode decodes and qualifies every resource, refusing unknown types and names
// defined twice once qualified (Cilium's rule: "a" and "<ns>/<config>/a" are one name).
func decode(q qualifier, resources []v1alpha1.EnvoyResource) (*decoded, field.ErrorList) {
	d := &decoded{index: map[string]int{}}
	var errs field.ErrorList
	for i, r := range resources {
		p := resourcesPath.Index(i)
		if _, ok := xdsres.Accepted[r.TypeURL]; !ok {
			errs = append(errs, field.NotSupported(p.Child("@type"), r.TypeURL, acceptedTypes()))
			continue
		}
		res, err := xdsres.Decode(r)
		if err != nil {
			msg := strings.TrimPrefix(xdsres.ErrText(err), "("+r.TypeURL+"): ")
			errs = append(errs, field.Invalid(p, r.TypeURL, msg))
			continue
		}
		written := res.Name
		switch m := res.Message.(type) {
		case *listenerv3.Listener:
			q.listener(m)
		case *routev3.RouteConfiguration:
			q.routeConfiguration(m)
		case *clusterv3.Cluster:
			q.cluster(m)
		case *tlsv3.Secret:
			q.secret(m)
		}
		res.Name = nameOf(res)
		if j, dup := d.index[res.Kind+"/"+res.Name]; dup {
			errs = append(errs, field.Invalid(p.Child("name"), written,
				fmt.Sprintf("%s %q once qualified, as spec.resources[%d] is", res.Kind, res.Name, j)))
			continue
		}
		d.index[res.Kind+"/"+res.Name] = i
		switch m := res.Message.(type) {
		case *listenerv3.Listener:
			d.listeners = append(d.listeners, m)
		case *routev3.RouteConfiguration:
			d.routes = append(d.routes, m)
		case *clusterv3.Cluster:
			d.clusters = append(d.clusters, m)
		case *tlsv3.Secret:
			d.secrets = append(d.secrets, m)
		}
		d.order = append(d.order, res)
	}
	return d, errs
}

func nameOf(r xdsres.Decoded) string {
	switch m := r.Message.(type) {
	case *listenerv3.Listener:
		return m.GetName()
	case *routev3.RouteConfiguration:
		return m.GetName()
	case *clusterv3.Cluster:
		return m.GetName()
	case *tlsv3.Secret:
		return m.GetName()
	}
	return r.Name
}

func acceptedTypes() []string {
	out := make([]string, 0, len(xdsres.Accepted))
	for t := range xdsres.Accepted {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// collectBackends gathers the Services the config gets EDS for, refusing a
// namespaced config's references to other namespaces: a tenant may read the
// endpoints of, and redirect, its own Services only.
func collectBackends(in Input) (backends, field.ErrorList) {
	var bs backends
	var errs field.ErrorList
	check := func(p *field.Path, ref v1alpha1.ServiceRef) (string, bool) {
		ns := ref.Namespace
		if ns == "" {
			ns = in.Namespace
		}
		switch {
		case ns == "":
			errs = append(errs, field.Required(p.Child("namespace"), "a ClusterEnvoyConfig must name the Service's namespace"))
			return "", false
		case in.Kind == KindEnvoyConfig && ns != in.Namespace:
			errs = append(errs, field.Forbidden(p.Child("namespace"), fmt.Sprintf("an EnvoyConfig may only name Services of its own namespace %q (use a ClusterEnvoyConfig for %q)", in.Namespace, ns)))
			return "", false
		}
		return ns, true
	}
	for i, s := range in.Spec.Services {
		if ns, ok := check(field.NewPath("spec", "services").Index(i), s.ServiceRef); ok {
			bs.add(ns, s.Name, nil)
		}
	}
	for i, b := range in.Spec.BackendServices {
		if ns, ok := check(field.NewPath("spec", "backendServices").Index(i), b.ServiceRef); ok {
			bs.add(ns, b.Name, append(slices.Clone(b.Ports), b.Number...))
		}
	}
	return bs, errs
}

// resolveClusters checks that every EDS cluster asks for endpoints a backend gives,
// and that every cluster a route or listener sends traffic to exists: defined here,
// or an EDS name of a backend, for which it returns the EDS cluster to add (the same
// bytes every producer writes for it, so the agent serves it once).
func resolveClusters(d *decoded, bs *backends) ([]*clusterv3.Cluster, field.ErrorList) {
	var errs field.ErrorList
	defined := map[string]bool{}
	for _, c := range d.clusters {
		defined[c.GetName()] = true
		if name, ok := edsName(c); ok && !bs.serves(name) {
			errs = append(errs, field.Invalid(resourcesPath.Index(d.index[xdsres.KindCluster+"/"+c.GetName()]), "Cluster "+c.GetName(),
				fmt.Sprintf("asks EDS for %q, which no spec.backendServices or spec.services entry gives (an entry {namespace: ns, name: svc} gives \"ns/svc\" and \"ns/svc:<port>\")", name)))
		}
	}
	var synthesized []*clusterv3.Cluster
	check := func(kind, owner string, refs []string) {
		for _, ref := range refs {
			switch {
			case defined[ref]:
			case bs.serves(ref):
				defined[ref] = true
				synthesized = append(synthesized, edsCluster(ref))
			default:
				errs = append(errs, field.Invalid(resourcesPath.Index(d.index[kind+"/"+owner]), kind+" "+owner,
					fmt.Sprintf("routes to cluster %q, which is neither a Cluster of this config nor the EDS name of a spec.backendServices or spec.services entry", ref)))
			}
		}
	}
	for _, rc := range d.routes {
		check(xdsres.KindRouteConfiguration, rc.GetName(), routeClusters(rc))
	}
	for _, l := range d.listeners {
		check(xdsres.KindListener, l.GetName(), listenerClusters(l))
	}
	slices.SortFunc(synthesized, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.GetName(), b.GetName()) })
	return synthesized, errs
}

// edsCluster is envoykit's EDS cluster, decoded.
func edsCluster(name string) *clusterv3.Cluster {
	r := envoykit.Resource(envoykit.TypeCluster, envoykit.EDSCluster(name))
	d, err := xdsres.Decode(r)
	if err != nil {
		panic(fmt.Sprintf("envoykit's EDS cluster does not decode: %v", err))
	}
	return d.Message.(*clusterv3.Cluster)
}

// resolveSecrets sorts the SDS names the resources fetch into Secrets defined here
// and Kubernetes Secrets, which the agent reads (only those listed) and serves
// under the same name. It returns the Kubernetes Secrets and stand-ins for them, so
// that validation sees the references resolved as they will be on the node.
func resolveSecrets(in Input, d *decoded) ([]string, []*tlsv3.Secret, field.ErrorList) {
	own := map[string]bool{}
	for _, s := range d.secrets {
		own[s.GetName()] = true
	}
	var kube []string
	var stubs []*tlsv3.Secret
	stubbed := map[string]bool{}
	var errs field.ErrorList
	check := func(kind, owner string, refs []string) {
		for _, ref := range refs {
			secret, ok := kubeSecret(ref)
			if own[ref] || !ok {
				continue // defined here, or missing: xdsres.Validate reports it
			}
			if !stubbed[ref] {
				stubbed[ref] = true
				stubs = append(stubs, &tlsv3.Secret{Name: ref})
			}
			if ns, _, _ := strings.Cut(secret, "/"); in.Kind == KindEnvoyConfig && ns != in.Namespace {
				errs = append(errs, field.Forbidden(resourcesPath.Index(d.index[kind+"/"+owner]), fmt.Sprintf(
					"%s %s: SDS secret %q is a Secret of namespace %q; an EnvoyConfig may only use Secrets of its own namespace %q", kind, owner, ref, ns, in.Namespace)))
				continue
			}
			if !slices.Contains(kube, secret) {
				kube = append(kube, secret)
			}
		}
	}
	for _, l := range d.listeners {
		check(xdsres.KindListener, l.GetName(), secretRefs([]*listenerv3.Listener{l}, nil))
	}
	for _, c := range d.clusters {
		check(xdsres.KindCluster, c.GetName(), secretRefs(nil, []*clusterv3.Cluster{c}))
	}
	slices.Sort(kube)
	return kube, stubs, errs
}

// dedupe drops repeated errors (a reference reported both by the reference check
// and by validation) keeping the first, in order.
func dedupe(errs field.ErrorList) field.ErrorList {
	seen := map[string]bool{}
	out := errs[:0:0]
	for _, e := range errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			out = append(out, e)
		}
	}
	return out
}
