package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// writeWatch counts the changes of every kind the L2 components write: each is one
// apiserver write.
type writeWatch struct {
	mu     sync.Mutex
	byKind map[string]int
}

func (r *l2rig) watchWrites(t testing.TB) *writeWatch {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	wc, err := client.NewWithWatch(r.env.Config, client.Options{Scheme: r.env.Scheme})
	must(t, err)
	w := &writeWatch{byKind: map[string]int{}}
	for _, l := range []struct {
		kind string
		list client.ObjectList
		ns   string
	}{
		{"NodeProxyConfig", &v1alpha1.NodeProxyConfigList{}, ""}, {"NodeProxy", &v1alpha1.NodeProxyList{}, ""},
		{"L2AnnouncementPolicy", &v1alpha1.L2AnnouncementPolicyList{}, ""}, {"Service", &corev1.ServiceList{}, ""},
		// The agents' Leases; kube-system's are the apiserver's own.
		{"Lease", &coordinationv1.LeaseList{}, "portico-system"}, {"Event", &eventsv1.EventList{}, ""},
	} {
		must(t, r.env.Client.List(ctx, l.list, client.InNamespace(l.ns)))
		rv := l.list.(metav1.ListInterface).GetResourceVersion()
		watch, err := wc.Watch(ctx, l.list, client.InNamespace(l.ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		must(t, err)
		go func() {
			for range watch.ResultChan() {
				w.mu.Lock()
				w.byKind[l.kind]++
				w.mu.Unlock()
			}
		}()
	}
	return w
}

func (w *writeWatch) total() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	var parts []string
	for k, c := range w.byKind {
		n += c
		parts = append(parts, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(parts)
	return n, strings.Join(parts, ", ")
}

// Three real agents (processes in their namespaces) and the controllers, settled: L2
// costs the apiserver no write at all, where the Lease heartbeats of the previous design
// cost 15 per second (issue 15).
func TestL2SteadyStateMakesNoWrites(t *testing.T) {
	r := newL2Rig(t)
	g := NewWithT(t)
	setupS1S2(t, r)
	r.waitEligible(g, "policy1", 3)
	r.waitAnswered(g, "default", "web4", lbIPv4)
	r.waitAnswered(g, "default", "web6", lbIPv6)
	time.Sleep(3 * time.Second) // the agents' last NodeProxy reports
	w := r.watchWrites(t)
	const window = 20 * time.Second
	time.Sleep(window)
	n, kinds := w.total()
	t.Logf("steady state, 3 agents: %d writes in %v (%.2f/s) %s", n, window, float64(n)/window.Seconds(), kinds)
	g.Expect(n).To(BeZero(), "writes in steady state: %s", kinds)
}
