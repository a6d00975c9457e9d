package ingress

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// rvs hands out resourceVersions as the apiserver does: a new one per write.
type rvs int

func (r *rvs) next() string { *r++; return strconv.Itoa(int(*r)) }

// stamp gives every object of in a resourceVersion and a UID, as objects read
// from the apiserver have.
func stamp(in Input, rv *rvs) {
	for _, ing := range in.Ingresses {
		ing.ResourceVersion, ing.UID = rv.next(), types.UID("uid-"+ing.Namespace+"-"+ing.Name)
	}
	for _, s := range in.Services {
		s.ResourceVersion = rv.next()
	}
}

// agree fails unless the memoised and the fresh translation of in are byte-identical.
func agree(t *testing.T, step string, m *Memo, in Input, opts Options) {
	t.Helper()
	want := marshalOutput(t, Translate(in, opts))
	if got := marshalOutput(t, m.Translate(in, opts)); !bytes.Equal(got, want) {
		t.Fatalf("%s: memoised translation differs from a fresh one:\n--- memo\n%s\n--- fresh\n%s", step, got, want)
	}
}

// TestMemoGoldenCases: on every golden case, repeated memoised translations
// (the second and third served from the memo, listeners of dedicated Ingresses
// added on top of memoised specs) equal the fresh one.
func TestMemoGoldenCases(t *testing.T) {
	for _, dir := range cases(t) {
		in, opts := loadCase(t, dir)
		var rv rvs
		stamp(in, &rv)
		m := NewMemo()
		for i := range 3 {
			agree(t, fmt.Sprintf("%s, pass %d", dir, i), m, in, opts)
		}
		if m.Hits != 2*len(in.Ingresses) {
			t.Errorf("%s: %d memo hits over two unchanged passes of %d Ingresses", dir, m.Hits, len(in.Ingresses))
		}
	}
}

func memoIngress(ns, name string, created int, host, svc string, port networkingv1.ServiceBackendPort) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		CreationTimestamp: metav1.NewTime(time.Unix(int64(1e9+created), 0))}}
	be := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}
	ing.Spec.Rules = []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{
			{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: be},
			{Path: "/api", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: be},
		}}}}}
	return ing
}

// TestMemoFollowsChanges: after each change of a sequence touching every input
// a memoised Ingress depends on, and some it does not, the memoised translation
// equals a fresh one, and unchanged Ingresses are served from the memo.
func TestMemoFollowsChanges(t *testing.T) {
	var rv rvs
	in := Input{Services: map[types.NamespacedName]*corev1.Service{}, Secrets: map[types.NamespacedName]bool{},
		SharedAddresses: []string{"192.168.10.211"}, DedicatedAddresses: map[types.NamespacedName][]string{}}
	for n := range 3 {
		ns := fmt.Sprintf("ns-%d", n)
		for s := range 2 {
			name := fmt.Sprintf("svc-%d", s)
			in.Services[types.NamespacedName{Namespace: ns, Name: name}] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
		}
	}
	for i := range 30 {
		ns := fmt.Sprintf("ns-%d", i%3)
		port := networkingv1.ServiceBackendPort{Number: 8080}
		if i%2 == 0 {
			port = networkingv1.ServiceBackendPort{Name: "http"}
		}
		ing := memoIngress(ns, fmt.Sprintf("ing-%d", i), i, fmt.Sprintf("app-%d.example.com", i), fmt.Sprintf("svc-%d", i%2), port)
		if i%3 == 0 {
			secret := fmt.Sprintf("tls-%d", i)
			in.Secrets[types.NamespacedName{Namespace: ns, Name: secret}] = true
			ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{ing.Spec.Rules[0].Host}, SecretName: secret}}
			ing.Annotations = map[string]string{AnnotationForceHTTPS: "true"}
		}
		in.Ingresses = append(in.Ingresses, ing)
	}
	// A newer Ingress serving ing-0's host with the same Secret: covered, but
	// the chain is ing-0's while ing-0 exists.
	twin := memoIngress("ns-0", "twin", 50, "app-0.example.com", "svc-1", networkingv1.ServiceBackendPort{Number: 8080})
	twin.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"app-0.example.com"}, SecretName: "tls-0"}}
	in.Ingresses = append(in.Ingresses, twin)
	stamp(in, &rv)
	opts := Options{}
	m := NewMemo()
	agree(t, "initial", m, in, opts)
	find := func(ns, name string) *networkingv1.Ingress {
		for _, ing := range in.Ingresses {
			if ing.Namespace == ns && ing.Name == name {
				return ing
			}
		}
		t.Fatalf("no Ingress %s/%s", ns, name)
		return nil
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"a path of one Ingress changes", func() {
			ing := find("ns-1", "ing-4")
			ing.Spec.Rules[0].HTTP.Paths[1].Path = "/v2"
			ing.ResourceVersion = rv.next()
		}},
		{"a referenced Service's port is renamed", func() {
			svc := in.Services[types.NamespacedName{Namespace: "ns-0", Name: "svc-0"}]
			svc.Spec.Ports[0].Name = "web"
			svc.ResourceVersion = rv.next()
		}},
		{"a referenced Service's port number changes", func() {
			svc := in.Services[types.NamespacedName{Namespace: "ns-1", Name: "svc-1"}]
			svc.Spec.Ports[0].Port = 9090
			svc.ResourceVersion = rv.next()
		}},
		{"a TLS Secret disappears", func() {
			delete(in.Secrets, types.NamespacedName{Namespace: "ns-0", Name: "tls-3"})
		}},
		{"another Ingress claims the freed TLS host", func() {
			ing := find("ns-2", "ing-5")
			ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: "app-3.example.com", IngressRuleValue: ing.Spec.Rules[0].IngressRuleValue})
			ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"app-3.example.com"}, SecretName: "tls-5"}}
			in.Secrets[types.NamespacedName{Namespace: "ns-2", Name: "tls-5"}] = true
			ing.ResourceVersion = rv.next()
		}},
		{"the TLS Secret comes back (the older Ingress wins the host again)", func() {
			in.Secrets[types.NamespacedName{Namespace: "ns-0", Name: "tls-3"}] = true
		}},
		{"a referenced Service is deleted", func() {
			delete(in.Services, types.NamespacedName{Namespace: "ns-2", Name: "svc-0"})
		}},
		{"it is created again", func() {
			in.Services[types.NamespacedName{Namespace: "ns-2", Name: "svc-0"}] = &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns-2", Name: "svc-0", ResourceVersion: rv.next()},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 7070}}}}
		}},
		{"an Ingress turns dedicated", func() {
			ing := find("ns-0", "ing-9")
			ing.Annotations[AnnotationLoadBalancerMode] = string(ModeDedicated)
			ing.ResourceVersion = rv.next()
			in.DedicatedAddresses[types.NamespacedName{Namespace: "ns-0", Name: "ing-9"}] = []string{"192.168.10.212"}
		}},
		{"its address changes", func() {
			in.DedicatedAddresses[types.NamespacedName{Namespace: "ns-0", Name: "ing-9"}] = []string{"192.168.10.213"}
		}},
		{"the shared address changes", func() {
			in.SharedAddresses = []string{"192.168.10.220"}
		}},
		{"an Ingress is deleted and re-created with the same name", func() {
			old := find("ns-1", "ing-7")
			fresh := memoIngress("ns-1", "ing-7", 100, "app-7.example.com", "svc-0", networkingv1.ServiceBackendPort{Number: 9999})
			fresh.UID, fresh.ResourceVersion = "uid-recreated", rv.next()
			*old = *fresh
		}},
		{"the older of two Ingresses sharing a host and Secret goes: the other now owns the chain", func() {
			in.Ingresses = slices.DeleteFunc(in.Ingresses, func(i *networkingv1.Ingress) bool { return i.Namespace == "ns-0" && i.Name == "ing-0" })
		}},
		{"nothing changes", func() {}},
	}
	for _, s := range steps {
		before := m.Hits
		s.change()
		agree(t, s.name, m, in, opts)
		if m.Hits-before < len(in.Ingresses)/2 {
			t.Errorf("%s: only %d of %d Ingresses served from the memo", s.name, m.Hits-before, len(in.Ingresses))
		}
	}
}

// TestMemoNeedsResourceVersions: objects built in memory without
// resourceVersions are always translated afresh, since their changes cannot be seen.
func TestMemoNeedsResourceVersions(t *testing.T) {
	in, opts := loadCase(t, "testdata/scenario-s3")
	m := NewMemo()
	agree(t, "first", m, in, opts)
	in.Ingresses[0].Spec.Rules[0].HTTP.Paths[0].Path = "/changed-in-place"
	agree(t, "changed without a new resourceVersion", m, in, opts)
	if m.Hits != 0 {
		t.Errorf("%d memo hits on objects without resourceVersions", m.Hits)
	}
}
