package v1alpha1_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{}, func(e *testenv.Env) (func(), error) {
		env = e
		return func() {}, nil
	})
}

func TestEveryCRDIsEstablished(t *testing.T) {
	ctx := context.Background()
	want := map[string]bool{
		"loadbalancerippools.portico.dev": false, "l2announcementpolicies.portico.dev": false,
		"envoyconfigs.portico.dev": false, "clusterenvoyconfigs.portico.dev": false,
		"nodeproxyconfigs.portico.dev": false, "nodeproxies.portico.dev": false,
	}
	var crds apiextensionsv1.CustomResourceDefinitionList
	if err := env.Client.List(ctx, &crds); err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds.Items {
		if _, ok := want[crd.Name]; !ok {
			continue
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				want[crd.Name] = true
			}
		}
	}
	for name, established := range want {
		if !established {
			t.Errorf("CRD %s is not installed and established", name)
		}
	}
	// Every short name resolves through discovery, as a user types it.
	for _, short := range []string{"ippool", "ippools", "lbippool", "l2policy", "pec", "pcec", "npc", "np", "nodeproxies"} {
		if _, err := env.Kubectl(ctx, "get", short); err != nil {
			t.Errorf("kubectl get %s: %v", short, err)
		}
	}
}

func TestIPPoolPrinterColumns(t *testing.T) {
	ctx := context.Background()
	pool := &v1alpha1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "lb-pool"},
		Spec:       v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "192.168.10.211", Stop: "192.168.10.215"}}},
	}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, pool) })
	// No controller runs here: write the status a controller would.
	pool.Status.IPv4 = &v1alpha1.IPFamilyCounts{Total: 5, Used: 1, Available: 4}
	pool.Status.Available = 4
	conditions.False(&pool.Status.Conditions, pool.Generation, v1alpha1.ConditionConflicting, v1alpha1.ReasonNoConflict, "no overlap with other pools")
	conditions.True(&pool.Status.Conditions, pool.Generation, v1alpha1.ConditionReady, v1alpha1.ReasonValid, "5 addresses")
	if err := env.Client.Status().Update(ctx, pool); err != nil {
		t.Fatal(err)
	}

	out, err := env.Kubectl(ctx, "get", "ippools")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", out)
	}
	if h := strings.Join(strings.Fields(lines[0]), " "); h != "NAME DISABLED CONFLICTING IPS AVAILABLE AGE" {
		t.Errorf("header = %q", h)
	}
	if !regexp.MustCompile(`^lb-pool\s+false\s+False\s+4\s+\d+s$`).MatchString(lines[1]) {
		t.Errorf("row = %q", lines[1])
	}

	desc, err := env.Kubectl(ctx, "describe", "ippool", "lb-pool")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Total:  5", "Used:  1", "Available:  4", "Type:  Conflicting", "Reason:  NoConflict"} {
		if !strings.Contains(strings.Join(strings.Fields(desc), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("kubectl describe lacks %q:\n%s", want, desc)
		}
	}
}

// admission is one object the apiserver must accept or reject.
type admission struct {
	name string
	obj  client.Object
	// wantErr are substrings of the rejection (field path and message); empty = accepted.
	wantErr []string
}

func pool(name string, blocks ...v1alpha1.IPBlock) *v1alpha1.LoadBalancerIPPool {
	return &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: blocks}}
}

func npcAnnouncing(name string, sel *metav1.LabelSelector) *v1alpha1.NodeProxyConfig {
	return &v1alpha1.NodeProxyConfig{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.NodeProxyConfigSpec{
		NodeSelector:  sel,
		Announcements: []v1alpha1.Announcement{{IP: "192.0.2.7", Service: v1alpha1.ServiceRef{Namespace: "default", Name: "web"}}},
	}}
}

func envoyResource(t *testing.T, doc string) v1alpha1.EnvoyResource {
	var r v1alpha1.EnvoyResource
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSchemaValidation(t *testing.T) {
	ctx := context.Background()
	listener := `{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"l"}`
	cases := []admission{
		{name: "ipv4 range", obj: pool("ok-range", v1alpha1.IPBlock{Start: "10.1.0.1", Stop: "10.1.0.9"})},
		{name: "ipv6 cidr and single address", obj: pool("ok-v6", v1alpha1.IPBlock{CIDR: "2001:db8::/64"}, v1alpha1.IPBlock{Start: "2001:db9::1"})},
		{name: "cidr and start", obj: pool("both", v1alpha1.IPBlock{CIDR: "10.0.0.0/24", Start: "10.0.0.1"}),
			wantErr: []string{"spec.blocks[0]", "exactly one of cidr or start must be set"}},
		{name: "prefix too long", obj: pool("bad-cidr", v1alpha1.IPBlock{CIDR: "10.0.0.0/33"}),
			wantErr: []string{"spec.blocks[0].cidr", "must be a CIDR"}},
		{name: "start not an address", obj: pool("bad-start", v1alpha1.IPBlock{Start: "abc"}),
			wantErr: []string{"spec.blocks[0].start", "must be an IPv4 or IPv6 address"}},
		{name: "mixed families", obj: pool("mixed", v1alpha1.IPBlock{Start: "10.0.0.1", Stop: "2001:db8::1"}),
			wantErr: []string{"spec.blocks[0]", "start and stop must be of the same IP family"}},
		{name: "stop without start", obj: pool("stop-only", v1alpha1.IPBlock{CIDR: "10.0.0.0/24", Stop: "10.0.0.9"}),
			wantErr: []string{"spec.blocks[0]", "stop requires start"}},
		{name: "pool without blocks", obj: pool("empty"), wantErr: []string{"spec.blocks"}},
		// Addresses no Service can be given, refused by CEL whether or not a webhook runs.
		{name: "the whole v4 space", obj: pool("all4", v1alpha1.IPBlock{CIDR: "0.0.0.0/0"}),
			wantErr: []string{`spec.blocks[0].cidr: Invalid value: "0.0.0.0/0": must not be 0.0.0.0/0 or ::/0 (the whole address space)`}},
		{name: "the whole v6 space", obj: pool("all6", v1alpha1.IPBlock{CIDR: "10.0.0.0/24"}, v1alpha1.IPBlock{CIDR: "::/0"}),
			wantErr: []string{`spec.blocks[1].cidr: Invalid value: "::/0": must not be 0.0.0.0/0 or ::/0`}},
		{name: "unspecified", obj: pool("zero", v1alpha1.IPBlock{CIDR: "0.0.0.0/24"}),
			wantErr: []string{"spec.blocks[0].cidr", "must not contain the unspecified address (0.0.0.0 or ::)"}},
		{name: "unspecified start", obj: pool("zero6", v1alpha1.IPBlock{Start: "::", Stop: "::9"}),
			wantErr: []string{"spec.blocks[0].start", "must not be the unspecified address"}},
		{name: "loopback", obj: pool("lo", v1alpha1.IPBlock{CIDR: "127.0.0.0/8"}),
			wantErr: []string{"spec.blocks[0].cidr", "must not contain loopback addresses (127.0.0.0/8, ::1)"}},
		{name: "cidr around loopback", obj: pool("around-lo", v1alpha1.IPBlock{CIDR: "64.0.0.0/2"}),
			wantErr: []string{"spec.blocks[0].cidr", "must not contain loopback addresses"}},
		{name: "v6 loopback start", obj: pool("lo6", v1alpha1.IPBlock{Start: "::1"}),
			wantErr: []string{"spec.blocks[0].start", "must not be a loopback address (127.0.0.0/8, ::1)"}},
		{name: "link-local", obj: pool("ll", v1alpha1.IPBlock{CIDR: "169.254.0.0/16"}),
			wantErr: []string{"spec.blocks[0].cidr", "must not contain link-local addresses (169.254.0.0/16, fe80::/10)"}},
		{name: "v6 link-local stop", obj: pool("ll6", v1alpha1.IPBlock{Start: "fe7f::1", Stop: "fe80::9"}),
			wantErr: []string{"spec.blocks[0].stop", "must not be a link-local address"}},
		{name: "multicast", obj: pool("mc", v1alpha1.IPBlock{CIDR: "239.0.0.0/24"}),
			wantErr: []string{"spec.blocks[0].cidr", "must not contain multicast addresses (224.0.0.0/4, ff00::/8)"}},
		{name: "v6 multicast start", obj: pool("mc6", v1alpha1.IPBlock{Start: "ff02::1"}),
			wantErr: []string{"spec.blocks[0].start", "must not be a multicast address (224.0.0.0/4, ff00::/8)"}},
		{name: "next to reserved blocks", obj: pool("edges", v1alpha1.IPBlock{CIDR: "126.0.0.0/8"}, v1alpha1.IPBlock{CIDR: "128.0.0.0/24"},
			v1alpha1.IPBlock{CIDR: "223.255.255.0/24"}, v1alpha1.IPBlock{Start: "169.253.255.255", Stop: "169.253.255.255"}, v1alpha1.IPBlock{CIDR: "fe7f::/16"})},
		{name: "envoy resource with @type", obj: &v1alpha1.EnvoyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "ok", Namespace: "default"},
			Spec:       v1alpha1.EnvoyConfigSpec{Resources: []v1alpha1.EnvoyResource{envoyResource(t, listener)}}}},
		{name: "envoy resource without @type", obj: &v1alpha1.EnvoyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "no-type", Namespace: "default"},
			Spec: v1alpha1.EnvoyConfigSpec{Resources: []v1alpha1.EnvoyResource{
				envoyResource(t, listener), envoyResource(t, `{"name":"lb_route"}`)}}},
			wantErr: []string{"spec.resources[1].@type: Required value"}},
		{name: "envoy resource with a foreign @type", obj: &v1alpha1.EnvoyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: "default"},
			Spec:       v1alpha1.EnvoyConfigSpec{Resources: []v1alpha1.EnvoyResource{envoyResource(t, `{"@type":"example.com/Thing"}`)}}},
			wantErr: []string{"spec.resources[0].@type", "should match '^type\\.googleapis\\.com/envoy\\.'"}},
		{name: "cluster envoy config service without namespace", obj: &v1alpha1.ClusterEnvoyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "no-ns"},
			Spec: v1alpha1.EnvoyConfigSpec{
				Services:  []v1alpha1.ServiceListener{{ServiceRef: v1alpha1.ServiceRef{Name: "echo"}}},
				Resources: []v1alpha1.EnvoyResource{envoyResource(t, listener)}}},
			wantErr: []string{"spec.services[].namespace is required"}},
		{name: "l2 policy announcing nothing", obj: &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "nothing"}},
			wantErr: []string{"spec", "at least one of loadBalancerIPs or externalIPs"}},
		{name: "redirect to a bad vip", obj: &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "bad-vip"},
			Spec:       v1alpha1.NodeProxyConfigSpec{Redirects: []v1alpha1.Redirect{{Name: "r", VIP: "10.0.0.300", Port: 80, Listener: "l"}}}},
			wantErr: []string{"spec.redirects[0].vip", "must be an IPv4 or IPv6 address"}},
		{name: "announcements pinned to one node", obj: npcAnnouncing("l2-pinned",
			&metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": "n1"}})},
		{name: "announcements on every node", obj: npcAnnouncing("l2-everywhere", nil),
			wantErr: []string{"spec.nodeSelector: Invalid value: announcements require a nodeSelector that selects one node: matchLabels with only a non-empty kubernetes.io/hostname"}},
		{name: "announcements on a group of nodes", obj: npcAnnouncing("l2-group",
			&metav1.LabelSelector{MatchLabels: map[string]string{"pool": "edge"}}),
			wantErr: []string{"spec.nodeSelector", "announcements require a nodeSelector that selects one node"}},
		{name: "announcements with an extra expression", obj: npcAnnouncing("l2-expr",
			&metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": "n1"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: metav1.LabelSelectorOpIn, Values: []string{"n1", "n2"}}}}),
			wantErr: []string{"spec.nodeSelector", "announcements require a nodeSelector that selects one node"}},
		{name: "announcements with an empty hostname", obj: npcAnnouncing("l2-empty",
			&metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": ""}}),
			wantErr: []string{"spec.nodeSelector", "announcements require a nodeSelector that selects one node"}},
		{name: "redirect port out of range", obj: &v1alpha1.NodeProxyConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "bad-port"},
			Spec:       v1alpha1.NodeProxyConfigSpec{Redirects: []v1alpha1.Redirect{{Name: "r", VIP: "10.0.0.1", Port: 70000, Listener: "l"}}}},
			wantErr: []string{"spec.redirects[0].port"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := env.Client.Create(ctx, tc.obj)
			if err == nil {
				t.Cleanup(func() { _ = env.Client.Delete(ctx, tc.obj) })
			}
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("rejected a valid object: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted an invalid object")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
