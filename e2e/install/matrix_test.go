package install_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// access is one question to the authorizer: may <component> <verb> <resource>?
type access struct {
	verb, group, resource, subresource, namespace, name string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.name != "" {
		r += " " + a.name
	}
	where := "cluster-wide"
	if a.namespace != "" {
		where = "in " + a.namespace
	}
	return fmt.Sprintf("%s %s %s", a.verb, r, where)
}

func can(verb, group, resource, namespace string) access {
	res, sub, _ := strings.Cut(resource, "/")
	return access{verb: verb, group: group, resource: res, subresource: sub, namespace: namespace}
}

func (a access) named(n string) access { a.name = n; return a }

// used is what each binary's code does against the API (read from the code, not from
// the generated roles, so that a marker lost or narrowed too far shows here); all of it
// must be allowed. Events are written in the namespace of the object they are about.
var used = map[string][]access{
	"lbipam": {
		can("list", "", "services", ""), can("watch", "", "services", ""),
		// The NodeProxyConfig webhook compares redirects with the nodes' addresses.
		can("list", "", "nodes", ""), can("watch", "", "nodes", ""),
		can("patch", "", "services/status", "default"),
		can("list", "portico.dev", "loadbalancerippools", ""), can("watch", "portico.dev", "loadbalancerippools", ""),
		can("update", "portico.dev", "loadbalancerippools/status", ""),
		can("create", "", "events", "default"), can("create", "events.k8s.io", "events", "default"),
		can("get", "coordination.k8s.io", "leases", ns), can("create", "coordination.k8s.io", "leases", ns),
		can("update", "coordination.k8s.io", "leases", ns),
		// Webhook certificate: its own Secret and webhook configuration only.
		can("list", "", "secrets", ns), can("watch", "", "secrets", ns),
		can("update", "", "secrets", ns).named(release + "-lbipam-webhook-cert"),
		can("list", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""),
		can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named(release + "-lbipam"),
	},
	"l2": {
		can("list", "", "services", ""), can("watch", "", "services", ""),
		can("patch", "", "services/status", "default"),
		can("list", "", "nodes", ""), can("watch", "", "nodes", ""),
		can("list", "discovery.k8s.io", "endpointslices", ""), can("watch", "discovery.k8s.io", "endpointslices", ""),
		can("list", "coordination.k8s.io", "leases", ns), can("watch", "coordination.k8s.io", "leases", ns),
		can("create", "coordination.k8s.io", "leases", ns), can("update", "coordination.k8s.io", "leases", ns),
		can("list", "portico.dev", "l2announcementpolicies", ""), can("update", "portico.dev", "l2announcementpolicies/status", ""),
		can("list", "portico.dev", "nodeproxies", ""), can("watch", "portico.dev", "nodeproxies", ""),
		can("create", "portico.dev", "nodeproxyconfigs", ""), can("update", "portico.dev", "nodeproxyconfigs", ""),
		can("delete", "portico.dev", "nodeproxyconfigs", ""), can("list", "portico.dev", "nodeproxyconfigs", ""),
		can("create", "", "events", "default"),
		can("update", "", "secrets", ns).named(release + "-l2-webhook-cert"),
		can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named(release + "-l2"),
	},
	"ingress": {
		can("list", "networking.k8s.io", "ingresses", ""), can("watch", "networking.k8s.io", "ingresses", ""),
		can("patch", "networking.k8s.io", "ingresses/status", "default"),
		can("list", "networking.k8s.io", "ingressclasses", ""), can("create", "networking.k8s.io", "ingressclasses", ""),
		can("list", "", "services", ""), can("create", "", "services", ns), can("create", "", "services", "default"),
		can("update", "", "services", "default"), can("delete", "", "services", "default"),
		// Secrets as metadata only (list/watch; the scenario run checks the responses).
		can("list", "", "secrets", ""), can("watch", "", "secrets", ""),
		can("create", "portico.dev", "nodeproxyconfigs", ""), can("update", "portico.dev", "nodeproxyconfigs", ""),
		can("delete", "portico.dev", "nodeproxyconfigs", ""), can("update", "portico.dev", "nodeproxyconfigs/status", ""),
		// The Programmed verdict: what the nodes report, and which nodes there are.
		can("list", "portico.dev", "nodeproxies", ""), can("watch", "portico.dev", "nodeproxies", ""),
		can("list", "", "nodes", ""), can("watch", "", "nodes", ""),
		can("create", "", "events", "default"),
		can("get", "coordination.k8s.io", "leases", ns), can("update", "coordination.k8s.io", "leases", ns),
	},
	"gateway": {
		can("list", "gateway.networking.k8s.io", "gatewayclasses", ""), can("list", "gateway.networking.k8s.io", "gateways", ""),
		can("watch", "gateway.networking.k8s.io", "httproutes", ""), can("list", "gateway.networking.k8s.io", "grpcroutes", ""),
		can("list", "gateway.networking.k8s.io", "tlsroutes", ""), can("list", "gateway.networking.k8s.io", "referencegrants", ""),
		can("patch", "gateway.networking.k8s.io", "gateways/status", "default"), can("update", "gateway.networking.k8s.io", "httproutes/status", "default"),
		can("update", "gateway.networking.k8s.io", "gatewayclasses/status", ""),
		// The classes' parameters, and the certificate of its GatewayClassConfig webhook.
		can("list", "portico.dev", "gatewayclassconfigs", ""), can("watch", "portico.dev", "gatewayclassconfigs", ""),
		can("update", "", "secrets", ns).named(release + "-gateway-webhook-cert"),
		can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named(release + "-gateway"),
		can("list", "", "services", ""), can("create", "", "services", "default"), can("delete", "", "services", "default"),
		// Secrets as metadata (list/watch); a certificate a listener names is read whole.
		can("list", "", "secrets", ""), can("get", "", "secrets", "default"),
		can("list", "", "namespaces", ""),
		can("create", "portico.dev", "nodeproxyconfigs", ""), can("delete", "portico.dev", "nodeproxyconfigs", ""),
		can("update", "portico.dev", "nodeproxyconfigs/status", ""),
		can("list", "portico.dev", "nodeproxies", ""), can("list", "", "nodes", ""),
		can("create", "", "events", "default"),
		can("get", "coordination.k8s.io", "leases", ns), can("update", "coordination.k8s.io", "leases", ns),
	},
	"envoyconfig": {
		can("list", "portico.dev", "envoyconfigs", ""), can("list", "portico.dev", "clusterenvoyconfigs", ""),
		can("update", "portico.dev", "envoyconfigs/status", "default"), can("update", "portico.dev", "clusterenvoyconfigs/status", ""),
		can("list", "", "services", ""), can("list", "", "nodes", ""),
		can("create", "portico.dev", "nodeproxyconfigs", ""), can("delete", "portico.dev", "nodeproxyconfigs", ""),
		can("update", "portico.dev", "nodeproxyconfigs/status", ""), can("list", "portico.dev", "nodeproxies", ""),
		can("create", "", "events", "default"),
		can("get", "coordination.k8s.io", "leases", ns), can("update", "coordination.k8s.io", "leases", ns),
		can("update", "", "secrets", ns).named(release + "-envoyconfig-webhook-cert"),
		can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named(release + "-envoyconfig"),
	},
	"nodeagent": {
		can("list", "portico.dev", "nodeproxyconfigs", ""), can("watch", "portico.dev", "nodeproxyconfigs", ""),
		can("list", "", "nodes", ""), can("watch", "", "nodes", ""),
		can("list", "discovery.k8s.io", "endpointslices", ""), can("watch", "discovery.k8s.io", "endpointslices", ""),
		can("list", "", "services", ""), can("watch", "", "services", ""),
		// The TLS Secrets it serves, each by a per-name watch.
		can("list", "", "secrets", "default"), can("watch", "", "secrets", "default"),
		can("get", "portico.dev", "nodeproxies", ""), can("create", "portico.dev", "nodeproxies", ""),
		can("update", "portico.dev", "nodeproxies/status", ""),
		can("get", "coordination.k8s.io", "leases", ns), can("create", "coordination.k8s.io", "leases", ns),
		can("update", "coordination.k8s.io", "leases", ns),
		// An agent finds its memberlist peers on their heartbeat Leases.
		can("list", "coordination.k8s.io", "leases", ns),
	},
}

// dangerous is what no Portico ServiceAccount may do, whatever its job. Which node or
// producer an object belongs to is beyond RBAC: those writes are checked against the
// admission policies with real tokens in TestPolicies.
var dangerous = []access{
	can("get", "", "secrets", "kube-system"), can("list", "", "secrets", "kube-system"),
	can("create", "", "secrets", ns), can("delete", "", "secrets", ns),
	can("get", "coordination.k8s.io", "leases", "kube-system"), can("update", "coordination.k8s.io", "leases", "kube-system"),
	can("create", "coordination.k8s.io", "leases", "kube-node-lease"), can("list", "coordination.k8s.io", "leases", ""),
	can("update", "coordination.k8s.io", "leases", "default"),
	can("create", "", "pods/exec", "default"), can("create", "", "pods/exec", ns), can("list", "", "pods", ""),
	can("create", "", "pods", ns), can("create", "", "serviceaccounts/token", ns),
	can("update", "", "nodes", ""), can("patch", "", "nodes/status", ""), can("delete", "", "nodes", ""),
	can("update", "", "configmaps", ns), can("list", "", "configmaps", ""),
	can("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), can("escalate", "rbac.authorization.k8s.io", "clusterroles", ""),
	can("bind", "rbac.authorization.k8s.io", "clusterroles", ""), can("impersonate", "", "users", ""),
	can("impersonate", "", "serviceaccounts", ns),
	can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named("someone-elses"),
	can("delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named(release + "-lbipam"),
	can("update", "admissionregistration.k8s.io", "validatingadmissionpolicies", "").named(release + "-node-agent-self"),
	can("delete", "admissionregistration.k8s.io", "validatingadmissionpolicybindings", "").named(release + "-nodeproxyconfig-producer"),
	can("update", "apiextensions.k8s.io", "customresourcedefinitions", ""),
	can("delete", "portico.dev", "nodeproxies", ""), can("update", "portico.dev", "loadbalancerippools", ""),
	can("update", "apps", "deployments", ns), can("update", "apps", "daemonsets", ns),
}

// notFor is what one component may not do although another one may.
var notFor = map[string][]access{
	"lbipam": {can("create", "portico.dev", "nodeproxyconfigs", ""), can("create", "", "services", "default"),
		can("list", "", "secrets", ""), can("update", "", "secrets", ns).named(release + "-l2-webhook-cert"),
		can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "").named(release + "-l2"),
		can("update", "portico.dev", "nodeproxies/status", "")},
	"l2": {can("create", "", "services", "default"), can("update", "", "services", "default"),
		can("list", "", "secrets", ""), can("update", "", "secrets", ns).named(release + "-lbipam-webhook-cert"),
		can("update", "portico.dev", "loadbalancerippools/status", ""), can("update", "portico.dev", "nodeproxies/status", "")},
	"ingress": {can("patch", "", "services/status", "default"), can("get", "", "secrets", "default"),
		can("update", "", "secrets", ns), can("update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""),
		can("update", "portico.dev", "nodeproxies/status", ""), can("list", "coordination.k8s.io", "leases", ns)},
	"gateway": {can("update", "", "secrets", "default"), can("patch", "", "services/status", "default"),
		can("update", "", "secrets", ns).named(release + "-lbipam-webhook-cert"), can("create", "portico.dev", "gatewayclassconfigs", ""),
		can("update", "portico.dev", "nodeproxies/status", ""), can("list", "coordination.k8s.io", "leases", ns),
		can("update", "networking.k8s.io", "ingresses/status", "default")},
	"envoyconfig": {can("list", "", "secrets", ""), can("get", "", "secrets", "default"),
		can("create", "", "services", "default"), can("update", "", "services", "default"),
		can("update", "portico.dev", "nodeproxies/status", ""), can("list", "coordination.k8s.io", "leases", ns)},
	"nodeagent": {can("get", "", "secrets", "default"), can("update", "", "secrets", "default"),
		can("create", "portico.dev", "nodeproxyconfigs", ""), can("update", "portico.dev", "nodeproxyconfigs", ""),
		can("update", "", "services", "default"), can("patch", "", "services/status", "default"),
		can("delete", "coordination.k8s.io", "leases", ns),
		can("create", "", "events", "default"), can("update", "portico.dev", "nodeproxies", "")},
}

// exempt are the dangerous rights a component holds by necessity, each with what
// bounds it instead of RBAC.
var exempt = map[string]func(access) bool{
	// The ingress controller watches Secrets (to tell whether an Ingress's TLS Secret
	// exists), and RBAC cannot tell a metadata-only watch from a full one: the scenario
	// run checks that every Secret response it receives is metadata only.
	"ingress": func(a access) bool { return a.resource == "secrets" && (a.verb == "list" || a.verb == "watch") },
	// The agent watches the TLS Secrets it serves, each with the field selector
	// metadata.name=<name>, which RBAC ignores: the scenario run checks it never asks
	// for Secrets any other way.
	"nodeagent": func(a access) bool { return a.resource == "secrets" && (a.verb == "list" || a.verb == "watch") },
	// The gateway controller watches Secrets as metadata only and reads whole only a
	// certificate a listener names (the spec wants ResolvedRefs=False for a malformed
	// one), in whatever namespace a ReferenceGrant lets the Gateway name it: RBAC
	// cannot express "Secrets some Gateway names". Reading is all it may do.
	"gateway": func(a access) bool {
		return a.resource == "secrets" && (a.verb == "get" || a.verb == "list" || a.verb == "watch")
	},
}

// TestRBACMatrix asks the apiserver's authorizer (SubjectAccessReview, as `kubectl auth
// can-i --as`) what each chart ServiceAccount may do: everything its binary uses, and
// none of the dangerous rights.
func TestRBACMatrix(t *testing.T) {
	c := startCluster(t, "")
	components := []string{"nodeagent"}
	for _, ctl := range c.controllers(t) {
		components = append(components, ctl)
	}
	for _, comp := range components {
		t.Run(comp, func(t *testing.T) {
			if _, ok := used[comp]; !ok {
				t.Fatalf("no expectations for the %s ServiceAccount: add what its binary uses to used", comp)
			}
			for _, a := range used[comp] {
				if !c.allowed(t, comp, a) {
					t.Errorf("%s may not %s, which its code does", saName(comp), a)
				}
			}
			for _, a := range append(dangerous, notFor[comp]...) {
				if ex := exempt[comp]; ex != nil && ex(a) {
					continue
				}
				if c.allowed(t, comp, a) {
					t.Errorf("%s may %s", saName(comp), a)
				}
			}
		})
	}
}

// controllers are the components of the controllers the chart installed.
func (c *cluster) controllers(t *testing.T) []string {
	var out []string
	for _, d := range c.chart.OfKind("Deployment") {
		out = append(out, d.GetLabels()["app.kubernetes.io/component"])
	}
	if len(out) < 3 {
		t.Fatalf("the chart installed %d controllers", len(out))
	}
	return out
}

func (c *cluster) allowed(t *testing.T, component string, a access) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   saUser(component),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: a.namespace, Verb: a.verb,
			Group: a.group, Resource: a.resource, Subresource: a.subresource, Name: a.name},
	}}
	res, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status.Allowed
}
