package vipguard

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func TestCheck(t *testing.T) {
	f := New(nil)
	f.AddNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.11"}, {Type: corev1.NodeExternalIP, Address: "2001:db8::11"},
		{Type: corev1.NodeHostName, Address: "n1.example.com"}}}})
	f.AddAPIServer(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1", "fd00::1"}}})
	redirects := []v1alpha1.Redirect{
		{Name: "ok", VIP: "192.0.2.1", Port: 80},
		{Name: "node", VIP: "10.0.0.11", Port: 22},
		{Name: "node6", VIP: "2001:db8:0::11", Port: 10250},
		{Name: "mapped", VIP: "::ffff:10.0.0.11", Port: 22},
		{Name: "api", VIP: "10.96.0.1", Port: 443},
		{Name: "api6", VIP: "fd00::1", Port: 443},
	}
	errs := f.Check(redirects, nil)
	want := []string{
		`spec.redirects[1].vip: Invalid value: "10.0.0.11": is an address of node n1 (InternalIP): its traffic arriving at the node would be handed to the proxy`,
		`spec.redirects[2].vip: Invalid value: "2001:db8:0::11": is an address of node n1 (ExternalIP)`,
		`spec.redirects[3].vip: Invalid value: "::ffff:10.0.0.11": is an address of node n1 (InternalIP)`,
		`spec.redirects[4].vip: Invalid value: "10.96.0.1": is the ClusterIP of Service default/kubernetes (the apiserver)`,
		`spec.redirects[5].vip: Invalid value: "fd00::1": is the ClusterIP of Service default/kubernetes (the apiserver)`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if got := errs[i].Error(); len(got) < len(w) || got[:len(w)] != w {
			t.Errorf("error %d: %q, want prefix %q", i, got, w)
		}
	}
	// VIPs the object already had are not checked again.
	old := VIPs(redirects[1:3])
	if errs := f.Check(redirects, func(a netip.Addr) bool { return old[a] }); len(errs) != 2 {
		t.Fatalf("with keep: %v", errs)
	}
	if errs := New(nil).Check(redirects, nil); errs != nil {
		t.Fatalf("nothing forbidden: %v", errs)
	}
	// Limited to the config's VIPs, the set holds only those, and the verdict is the same.
	only := New(VIPs(redirects[:2]))
	only.AddAPIServer(&corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1"}})
	only.AddNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.11"}}}})
	if only.Len() != 1 || len(only.Check(redirects[:2], nil)) != 1 {
		t.Fatalf("limited set: %d addresses, %v", only.Len(), only.Check(redirects[:2], nil))
	}
	if errs := New(nil).Check(redirects, nil); errs != nil {
		t.Fatalf("nothing forbidden: %v", errs)
	}
}

func TestTrimNode(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
			Images: []corev1.ContainerImage{{Names: []string{"big"}}}}}
	got, err := TrimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	tn := got.(*corev1.Node)
	if tn.Name != "n1" || len(tn.Status.Addresses) != 1 || tn.Status.Images != nil || tn.Labels != nil {
		t.Fatalf("trimmed: %+v", tn)
	}
}
