package gateway

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/envoykit"
)

// grants indexes ReferenceGrants by the namespace they grant access into.
type grants map[string][]*gatewayv1.ReferenceGrant

func indexGrants(in []*gatewayv1.ReferenceGrant) grants {
	out := grants{}
	for _, g := range in {
		out[g.Namespace] = append(out[g.Namespace], g)
	}
	return out
}

// permit reports whether a ReferenceGrant in to's namespace lets objects of
// fromKind (Gateway API group) in fromNS refer to the object of toGroup/toKind named to.
func (g grants) permit(fromKind, fromNS, toGroup, toKind string, to types.NamespacedName) bool {
	for _, rg := range g[to.Namespace] {
		from := false
		for _, f := range rg.Spec.From {
			if string(f.Group) == group && string(f.Kind) == fromKind && string(f.Namespace) == fromNS {
				from = true
				break
			}
		}
		if !from {
			continue
		}
		for _, t := range rg.Spec.To {
			if string(t.Group) == toGroup && string(t.Kind) == toKind && (t.Name == nil || *t.Name == "" || string(*t.Name) == to.Name) {
				return true
			}
		}
	}
	return false
}

// refProblem is why a backendRef cannot be used: a ResolvedRefs reason and message.
type refProblem struct {
	reason gatewayv1.RouteConditionReason
	msg    string
}

// backends collects the clusters and backend Services of one route.
type backends struct {
	clusters map[string]any // cluster name → resource
	services map[types.NamespacedName]map[int32]bool
}

func newBackends() *backends {
	return &backends{clusters: map[string]any{}, services: map[types.NamespacedName]map[int32]bool{}}
}

// App protocols of Service ports that change how Envoy talks to the backend.
const (
	appH2C = "kubernetes.io/h2c"
	appWS  = "kubernetes.io/ws"
)

// resolve turns a backendRef of a route (kind, namespace) into a cluster name,
// or says why it cannot be used. http2: the backend speaks HTTP/2 without TLS
// (every gRPC backend, and Service ports with appProtocol kubernetes.io/h2c).
func (t *translation) resolve(b *backends, kind, ns string, ref gatewayv1.BackendObjectReference, field string, l7, grpc bool) (string, *refProblem) {
	grp, k := "", "Service"
	if ref.Group != nil {
		grp = string(*ref.Group)
	}
	if ref.Kind != nil {
		k = string(*ref.Kind)
	}
	if grp != "" || k != "Service" {
		return "", &refProblem{gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("%s: %s/%s is not supported (only core Services)", field, grp, k)}
	}
	key := types.NamespacedName{Namespace: ns, Name: string(ref.Name)}
	if ref.Namespace != nil {
		key.Namespace = string(*ref.Namespace)
	}
	if key.Namespace != ns && !t.grants.permit(kind, ns, "", "Service", key) {
		return "", &refProblem{gatewayv1.RouteReasonRefNotPermitted,
			fmt.Sprintf("%s: Service %s is in another namespace and no ReferenceGrant there allows %ss from %s", field, key, kind, ns)}
	}
	svc := t.in.Services[key]
	if svc == nil {
		return "", &refProblem{gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("%s: Service %s not found", field, key)}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return "", &refProblem{gatewayv1.RouteReasonUnsupportedProtocol, fmt.Sprintf("%s: Service %s is of type ExternalName, which has no endpoints", field, key)}
	}
	if ref.Port == nil {
		return "", &refProblem{gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("%s: a Service backend needs a port", field)}
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == *ref.Port {
			port = &svc.Spec.Ports[i]
			break
		}
	}
	if port == nil {
		return "", &refProblem{gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("%s: Service %s has no port %d", field, key, *ref.Port)}
	}
	h2 := grpc
	if l7 && port.AppProtocol != nil {
		switch ap := *port.AppProtocol; ap {
		case appH2C:
			h2 = true
		case appWS, "http", "HTTP", "kubernetes.io/http", "grpc":
		default:
			return "", &refProblem{gatewayv1.RouteReasonUnsupportedProtocol,
				fmt.Sprintf("%s: port %d of Service %s has appProtocol %q, which Portico cannot speak to", field, port.Port, key, ap)}
		}
	}
	eds := envoykit.EDSName(key.Namespace, key.Name, strconv.Itoa(int(port.Port)))
	name := eds
	if h2 {
		name = eds + "/h2c"
		c := envoykit.EDSClusterFor(name, eds)
		envoykit.HTTP2Upstream(&c)
		b.clusters[name] = c
	} else {
		b.clusters[name] = envoykit.EDSCluster(name)
	}
	if b.services[key] == nil {
		b.services[key] = map[int32]bool{}
	}
	b.services[key][port.Port] = true
	return name, nil
}

// invalid adds the cluster that answers for invalid backends.
func (b *backends) invalid() string {
	b.clusters[envoykit.InvalidBackendCluster] = envoykit.NoEndpointsCluster(envoykit.InvalidBackendCluster)
	return envoykit.InvalidBackendCluster
}
