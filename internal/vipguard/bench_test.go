package vipguard

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// BenchmarkWebhookCheck is what the NodeProxyConfig webhook does per admission: build
// the forbidden set from 5,000 nodes (two addresses each) and the apiserver Service,
// then check a config with 100 redirects.
func BenchmarkWebhookCheck(b *testing.B) {
	nodes := make([]corev1.Node, 5000)
	for i := range nodes {
		nodes[i] = corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i)}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.1", i/256, i%256)},
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("fd00::%x", i+1)}}}}
	}
	api := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"}, Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.1"}}}
	redirects := make([]v1alpha1.Redirect, 100)
	for i := range redirects {
		redirects[i] = v1alpha1.Redirect{Name: fmt.Sprint(i), VIP: fmt.Sprintf("192.0.2.%d", i), Port: 80}
	}
	b.ReportAllocs()
	for b.Loop() {
		f := New(VIPs(redirects))
		for i := range nodes {
			f.AddNode(&nodes[i])
		}
		f.AddAPIServer(api)
		if errs := f.Check(redirects, nil); len(errs) != 0 {
			b.Fatal(errs)
		}
	}
}
