//go:build unix

package ingress

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// scaleInput is 5,000 shared Ingresses of 4 paths each (20,000 paths), every
// fifth with TLS, over 500 Services in 50 namespaces.
func scaleInput() Input {
	in := Input{
		Services:        map[types.NamespacedName]*corev1.Service{},
		Secrets:         map[types.NamespacedName]bool{},
		SharedAddresses: []string{"192.168.10.211"},
	}
	prefix := networkingv1.PathTypePrefix
	exact := networkingv1.PathTypeExact
	for i := 0; i < 5000; i++ {
		ns := fmt.Sprintf("ns-%d", i%50)
		svc := fmt.Sprintf("svc-%d", i%10)
		in.Services[types.NamespacedName{Namespace: ns, Name: svc}] = &corev1.Service{
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
		}
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("ing-%d", i), CreationTimestamp: metav1.NewTime(time.Unix(int64(1e9+i), 0)),
		}}
		host := fmt.Sprintf("app-%d.example.com", i)
		backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 8080}}}
		ing.Spec.Rules = []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{
				{Path: "/", PathType: &prefix, Backend: backend},
				{Path: "/api", PathType: &prefix, Backend: backend},
				{Path: "/api/v1/items", PathType: &prefix, Backend: backend},
				{Path: "/healthz", PathType: &exact, Backend: backend},
			},
		}}}}
		if i%5 == 0 {
			secret := "tls-" + ing.Name
			in.Secrets[types.NamespacedName{Namespace: ns, Name: secret}] = true
			ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: secret}}
		}
		in.Ingresses = append(in.Ingresses, ing)
	}
	return in
}

// BenchmarkTranslate5000 reports the time and allocations of one full
// translation and the size of the largest NodeProxyConfig spec (the shared one,
// which carries the TLS filter chains).
func BenchmarkTranslate5000(b *testing.B) {
	in := scaleInput()
	b.ReportAllocs()
	b.ResetTimer()
	before := cpuTime()
	var out Output
	for i := 0; i < b.N; i++ {
		out = Translate(in, Options{})
	}
	b.StopTimer()
	// CPU time (GC included) is reported besides wall time because the shared
	// development machines are loaded: it is what the translation itself costs.
	b.ReportMetric(float64((cpuTime()-before).Milliseconds())/float64(b.N), "cpu-ms/op")
	largest, name, total := 0, "", 0
	for _, c := range out.Configs {
		raw, err := json.Marshal(c.Spec)
		if err != nil {
			b.Fatal(err)
		}
		total += len(raw)
		if len(raw) > largest {
			largest, name = len(raw), c.Name
		}
	}
	b.ReportMetric(float64(largest), "largest-spec-bytes")
	b.ReportMetric(float64(total)/float64(len(out.Configs)), "mean-spec-bytes")
	b.Logf("%d configs; largest %s: %d bytes", len(out.Configs), name, largest)
}

// BenchmarkTranslate5000OneChange is the controller's steady state: the memo
// holds the 5,000 Ingresses and each call follows a change to one of them.
//
//	go test ./internal/translate/ingress/ -run '^$' -bench 'Translate5000' -benchmem
func BenchmarkTranslate5000OneChange(b *testing.B) {
	in := scaleInput()
	var rv rvs
	stamp(in, &rv)
	m := NewMemo()
	m.Translate(in, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	before := cpuTime()
	for i := 0; i < b.N; i++ {
		ing := in.Ingresses[(i*7919)%len(in.Ingresses)]
		ing.Spec.Rules[0].HTTP.Paths[1].Path = fmt.Sprintf("/api-%d", i)
		ing.ResourceVersion = rv.next()
		m.Translate(in, Options{})
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	if m.Misses != len(in.Ingresses)+b.N {
		b.Errorf("%d misses for %d changes after the first pass", m.Misses-len(in.Ingresses), b.N)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
