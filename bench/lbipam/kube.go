//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// runLabel marks every Service of one phase, so watches and deletes see only that phase.
const runLabel = "bench.portico.dev/run"

// kube holds the bench's own clients.
type kube struct {
	cs          kubernetes.Interface // protobuf, high QPS: creates, deletes, lists, watches, bare loop
	metrics     kubernetes.Interface // JSON, for GET /metrics (a protobuf Accept header confuses promhttp)
	concurrency int
	namespaces  int
}

func namespaceOf(run string, i, namespaces int) string {
	return fmt.Sprintf("bench-%s-%d", run, i%namespaces)
}

func (k *kube) ensureNamespaces(ctx context.Context, run string) error {
	for i := 0; i < k.namespaces; i++ {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceOf(run, i, k.namespaces)}}
		if _, err := k.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// createServices creates n LoadBalancer Services with k.concurrency workers and calls
// created (when not nil) right after each one exists, like a watch event would.
func (k *kube) createServices(ctx context.Context, run string, n int, created func(types.NamespacedName)) error {
	if err := k.ensureNamespaces(ctx, run); err != nil {
		return err
	}
	idx := make(chan int)
	errs := make(chan error, k.concurrency)
	var wg sync.WaitGroup
	for w := 0; w < k.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				name := fmt.Sprintf("svc-%05d", i)
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: namespaceOf(run, i, k.namespaces), Name: name, Labels: map[string]string{runLabel: run}},
					Spec: corev1.ServiceSpec{
						Type:     corev1.ServiceTypeLoadBalancer,
						Selector: map[string]string{"app": name},
						Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
						// The default node-port range holds 2,768 ports; 10,000 Services would
						// exhaust it long before LB-IPAM is stressed. LB-IPAM needs no node port.
						AllocateLoadBalancerNodePorts: ptr.To(false),
					},
				}
				if _, err := k.cs.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating %s/%s: %w", svc.Namespace, name, err)
					return
				}
				if created != nil {
					created(types.NamespacedName{Namespace: svc.Namespace, Name: name})
				}
			}
		}()
	}
	var err error
feed:
	for i := 0; i < n; i++ {
		select {
		case idx <- i:
		case err = <-errs:
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// assignedWatcher counts a run's Services whose status shows an address, from an
// informer rather than repeated Lists: a 10,000-item List every 500 ms would load the
// apiserver more than the controller under test does.
type assignedWatcher struct {
	want     int
	mu       sync.Mutex
	assigned map[types.NamespacedName]bool
	created  atomic.Int64
	allAt    time.Time
	done     chan struct{}
	stop     chan struct{}
}

func (k *kube) watchAssigned(run string, want int) (*assignedWatcher, error) {
	w := &assignedWatcher{want: want, assigned: map[types.NamespacedName]bool{}, done: make(chan struct{}), stop: make(chan struct{})}
	f := informers.NewSharedInformerFactoryWithOptions(k.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = runLabel + "=" + run
	}))
	inf := f.Core().V1().Services().Informer()
	observe := func(obj any) {
		svc, ok := obj.(*corev1.Service)
		if !ok || len(svc.Status.LoadBalancer.Ingress) == 0 {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		if w.assigned[key] {
			return
		}
		w.assigned[key] = true
		if len(w.assigned) == w.want {
			w.allAt = time.Now()
			close(w.done)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
	}); err != nil {
		return nil, err
	}
	f.Start(w.stop)
	if !cache.WaitForCacheSync(w.stop, inf.HasSynced) {
		return nil, fmt.Errorf("service informer did not sync")
	}
	return w, nil
}

func (w *assignedWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.assigned)
}

// wait returns when every Service has an address, printing progress to stderr.
func (w *assignedWatcher) wait(ctx context.Context, label string, timeout time.Duration) (time.Time, error) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case <-w.done:
			return w.allAt, nil
		case <-tick.C:
			logf("%s: %d created, %d assigned of %d", label, w.created.Load(), w.count(), w.want)
		case <-deadline:
			return time.Time{}, fmt.Errorf("%s: only %d of %d Services assigned after %s", label, w.count(), w.want, timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func (w *assignedWatcher) close() { close(w.stop) }

// snapshot maps every Service of a run to the addresses its status shows.
func (k *kube) snapshot(ctx context.Context, run string) (map[types.NamespacedName][]string, error) {
	out := map[types.NamespacedName][]string{}
	opts := metav1.ListOptions{LabelSelector: runLabel + "=" + run, Limit: 1000}
	for {
		list, err := k.cs.CoreV1().Services("").List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, s := range list.Items {
			var ips []string
			for _, in := range s.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			out[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = ips
		}
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// deleteRun deletes a run's Services one by one: envtest runs no namespace controller,
// so deleting the namespaces would leave the Services in place.
func (k *kube) deleteRun(ctx context.Context, run string) error {
	snap, err := k.snapshot(ctx, run)
	if err != nil {
		return err
	}
	keys := make(chan types.NamespacedName)
	var wg sync.WaitGroup
	var firstErr firstError
	for w := 0; w < k.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				err := k.cs.CoreV1().Services(key.Namespace).Delete(ctx, key.Name, metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					firstErr.set(err)
				}
			}
		}()
	}
	for key := range snap {
		keys <- key
	}
	close(keys)
	wg.Wait()
	return firstErr.get()
}

// firstError keeps the first of several workers' errors. (atomic.Value cannot: it panics
// when errors of different concrete types are stored.)
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// bareLoop is the baseline: workers take each created Service and server-side-apply the
// status LB-IPAM would write (one ingress IP with its mode, one IPAMRequestSatisfied
// condition), with no cache, no allocator, no events. Addresses come from a counter.
func (k *kube) bareLoop(ctx context.Context, in <-chan types.NamespacedName, workers int, base netip.Addr) error {
	var next atomic.Uint32
	start := binary.BigEndian.Uint32(base.AsSlice())
	var wg sync.WaitGroup
	var firstErr firstError
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range in {
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], start+next.Add(1))
				ip := netip.AddrFrom4(b).String()
				now := metav1.Now()
				st := corev1ac.ServiceStatus().
					WithLoadBalancer(corev1ac.LoadBalancerStatus().WithIngress(
						corev1ac.LoadBalancerIngress().WithIP(ip).WithIPMode(corev1.LoadBalancerIPModeVIP))).
					WithConditions(metav1ac.Condition().WithType(string(v1alpha1.ConditionIPAMRequestSatisfied)).
						WithStatus(metav1.ConditionTrue).WithReason(string(v1alpha1.ReasonSatisfied)).
						WithMessage("assigned " + ip + " from pool bench").WithObservedGeneration(1).WithLastTransitionTime(now))
				ac := corev1ac.Service(key.Name, key.Namespace).WithStatus(st)
				_, err := k.cs.CoreV1().Services(key.Namespace).ApplyStatus(ctx, ac, metav1.ApplyOptions{FieldManager: "bench-bare", Force: true})
				if err != nil {
					firstErr.set(fmt.Errorf("applying status of %s: %w", key, err))
				}
			}
		}()
	}
	wg.Wait()
	return firstErr.get()
}
