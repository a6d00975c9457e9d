package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// The objects the scenarios share. Each container ensures what it needs, so that a
// label filter (`--ginkgo.label-filter=S3`) runs it alone; what several use stays.

// backendImage answers HTTP on 8080 with its Pod's name (agnhost serve-hostname), so
// that real HTTP through Envoy shows which backend answered. Locally kwok makes its
// Pods Ready without running them.
const backendImage = "registry.k8s.io/e2e-test-images/agnhost:2.53"

// ensureBase creates S1's pool and S2's policy if missing and waits until every node
// is eligible for L2.
func ensureBase(ctx context.Context) {
	GinkgoHelper()
	Eventually(func() error { return ensureErr(ctx, lbPool()) }).Should(Succeed(), "the pool webhook never admitted lb-pool")
	Eventually(func() error { return ensureErr(ctx, policy1()) }).Should(Succeed(), "the L2 webhook never admitted policy1")
	Eventually(func(g Gomega) {
		p := &v1alpha1.L2AnnouncementPolicy{}
		g.Expect(k8s().Get(ctx, client.ObjectKey{Name: "policy1"}, p)).To(Succeed())
		g.Expect(p.Status.EligibleNodes).To(BeEquivalentTo(len(cluster.Nodes())), "eligible nodes of policy1")
	}).WithTimeout(60 * time.Second).Should(Succeed())
}

// policy1 is scenario S2's policy.
func policy1() *v1alpha1.L2AnnouncementPolicy {
	return &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "policy1"},
		Spec: v1alpha1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth1$"}, ExternalIPs: true, LoadBalancerIPs: true}}
}

// ensureBackends creates, for each name, a Deployment of one backend Pod labelled
// app=<name> and a Service <name>:<port> in default.
func ensureBackends(ctx context.Context, port int32, names ...string) {
	GinkgoHelper()
	for _, name := range names {
		labels := map[string]string{"app": name}
		ensure(ctx, backendDeployment(name, labels))
		ensure(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Selector: labels,
				Ports: []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(8080)}}}})
	}
}

// backendDeployment is one backend Pod (HTTP on 8080) labelled labels, in default, on
// the node where Pods become Ready.
func backendDeployment(name string, labels map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeName: cluster.PodNodeName(),
				Containers: []corev1.Container{{Name: "backend", Image: backendImage,
					Args:  []string{"serve-hostname", "--http=true", "--udp=false", "--tcp=false", "--port=8080"},
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}}}
}

// ingress is a portico Ingress in default with one rule of Prefix paths.
func ingress(name string, paths ...pathTo) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("portico"),
			Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}}}}
	for _, p := range paths {
		typ := networkingv1.PathTypePrefix
		if p.pathType != "" {
			typ = p.pathType
		}
		ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths, networkingv1.HTTPIngressPath{Path: p.path, PathType: &typ,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: p.service,
				Port: networkingv1.ServiceBackendPort{Number: p.port}}}})
	}
	return ing
}

type pathTo struct {
	path     string
	pathType networkingv1.PathType
	service  string
	port     int32
}

// basicIngress is scenario S3's Ingress.
func basicIngress() *networkingv1.Ingress {
	return ingress("basic-ingress", pathTo{path: "/details", service: "details", port: 9080},
		pathTo{path: "/", service: "productpage", port: 9080})
}

// ensureS3 makes S3's backends and Ingress exist and returns the shared address once
// the Ingress shows it.
func ensureS3(ctx context.Context) {
	GinkgoHelper()
	ensureBase(ctx)
	ensureBackends(ctx, 9080, "details", "productpage")
	ensure(ctx, basicIngress())
	ingressAddress("default", "basic-ingress")
}

func ensureErr(ctx context.Context, obj client.Object) error {
	if err := k8s().Create(ctx, obj); err != nil && !isAlreadyExists(err) {
		return err
	}
	return nil
}
