// Command l2writes measures the apiserver writes L2 liveness costs in steady state and
// per death, with the L2 controller in memberlist mode and N simulated agents: each is a
// memberlist member on loopback publishing the metadata a real agent publishes, plus the
// one Lease write a real agent makes at start to publish its address. The agents' quorum
// pings are left out: they never touch the apiserver, and 100 of them in one process
// would only measure this machine's two cores. The apiserver is a real kube-apiserver (internal/testenv); writes are
// counted as watch events on every kind the L2 components write.
//
//	go run ./bench/l2writes -agents 3,100 -window 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/l2member"
	"github.com/portico-dev/portico/internal/l2quorum"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/nodeagent/agent"
)

func main() {
	agentsFlag := flag.String("agents", "3,100", "comma-separated numbers of simulated agents")
	services := flag.Int("services", 20, "Services announced")
	window := flag.Duration("window", 30*time.Second, "steady-state measurement window")
	probe := flag.Duration("probe-interval", time.Second, "memberlist probe interval of the simulation: a hundred members in one process on a small machine miss the production 200 ms under load and flap, which measures the machine; writes do not depend on it")
	flag.Parse()
	timing = l2quorum.DefaultTiming
	timing.ProbeInterval, timing.ProbeTimeout = *probe, *probe/2
	fmt.Printf("%-8s %-10s %-22s %-22s %s\n", "agents", "services", "steady writes/s", "writes for one death", "dead node's NodeProxyConfig deleted after")
	for _, s := range strings.Split(*agentsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fail(err)
		}
		if err := run(n, *services, *window); err != nil {
			fail(err)
		}
	}
}

var timing l2quorum.Timing

func fail(err error) {
	fmt.Fprintln(os.Stderr, "l2writes:", err)
	os.Exit(1)
}

func run(n, services int, window time.Duration) error {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Client
	const ns = "portico-system"
	names, err := createObjects(ctx, c, ns, n, services)
	if err != nil {
		return err
	}

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		return err
	}
	if err := l2.Setup(mgr, l2.Options{Namespace: ns, Memberlist: &l2.MemberlistOptions{Name: "l2-controller", Bind: "127.0.0.1:0", Timing: timing}}); err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()

	agents := make([]*l2member.Member, n)
	for i, name := range names {
		a, err := startAgent(ctx, c, ns, name)
		if err != nil {
			return err
		}
		agents[i] = a
	}
	// Agents publish what they applied: the set their NodeProxyConfig lists.
	go publishApplied(ctx, c, names, agents)

	deadline := time.Now().Add(5 * time.Minute)
	for !settled(ctx, c, n, services) {
		if time.Now().After(deadline) {
			p := &v1alpha1.L2AnnouncementPolicy{}
			_ = c.Get(ctx, client.ObjectKey{Name: "p"}, p)
			return fmt.Errorf("%d agents: the assignment did not settle (eligible nodes %d, announced %d)", n, p.Status.EligibleNodes, p.Status.AnnouncedIPs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)

	w, err := watchWrites(ctx, env, ns)
	if err != nil {
		return err
	}
	w.reset()
	time.Sleep(window)
	steady := float64(w.count.Load()) / window.Seconds()
	steadyKinds := w.String()
	p := &v1alpha1.L2AnnouncementPolicy{}
	_ = c.Get(ctx, client.ObjectKey{Name: "p"}, p)
	fmt.Printf("         eligible nodes at the end of the window: %d of %d\n", p.Status.EligibleNodes, n)

	// One death: crash an announcing agent and count the writes it causes.
	victim := -1
	var npcs v1alpha1.NodeProxyConfigList
	if err := c.List(ctx, &npcs); err != nil {
		return err
	}
	for i, name := range names {
		for _, x := range npcs.Items {
			if l2.NodeOf(&x) == name {
				victim = i
			}
		}
	}
	w.reset()
	killed := time.Now()
	agents[victim].Shutdown()
	var moved time.Duration
	for time.Since(killed) < 60*time.Second {
		if err := c.Get(ctx, client.ObjectKey{Name: l2.NPCName(names[victim])}, &v1alpha1.NodeProxyConfig{}); client.IgnoreNotFound(err) == nil && err != nil {
			moved = time.Since(killed)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	fmt.Printf("%-8d %-10d %-22.2f %-22d %v\n", n, services, steady, w.count.Load(), moved.Round(time.Millisecond))
	fmt.Printf("         steady-state writes by kind: %s\n", steadyKinds)
	fmt.Printf("         writes for the death by kind: %s\n", w)
	return nil
}

// createObjects creates the namespace, n Nodes with their agents' reported interfaces,
// the policy and the Services; it returns the node names.
func createObjects(ctx context.Context, c client.Client, ns string, n, services int) ([]string, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("node-%03d", i)
		if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: names[i], Labels: map[string]string{"kubernetes.io/hostname": names[i]}}}); err != nil {
			return nil, err
		}
		np := &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: names[i]}}
		if err := c.Create(ctx, np); err != nil {
			return nil, err
		}
		np.Status.Interfaces = []string{"eth1"}
		if err := c.Status().Update(ctx, np); err != nil {
			return nil, err
		}
	}
	if err := c.Create(ctx, &v1alpha1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.L2AnnouncementPolicySpec{
		Interfaces: []string{"^eth1$"}, ExternalIPs: true, ExternalIPCIDRs: []string{"10.77.0.0/16"}}}); err != nil {
		return nil, err
	}
	for i := range services {
		if err := c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("svc-%d", i)},
			Spec: corev1.ServiceSpec{ExternalIPs: []string{fmt.Sprintf("10.77.%d.%d", i/250, i%250+1)}, Ports: []corev1.ServicePort{{Port: 80}}}}); err != nil {
			return nil, err
		}
	}

	return names, nil
}

// startAgent runs one simulated agent: a member on loopback, and the one Lease write a
// real agent makes to publish its memberlist address.
func startAgent(ctx context.Context, c client.Client, ns, name string) (*l2member.Member, error) {
	a, err := l2member.Start(l2member.Config{Name: name, Bind: "127.0.0.1:0", Timing: timing, Log: logr.Discard()})
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); a.Shutdown() }()
	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: agent.LeaseName(name),
		Annotations: map[string]string{agent.AnnotationMemberlistAddress: a.Addr()}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), RenewTime: &now, LeaseDurationSeconds: ptr.To[int32](40)}}
	return a, c.Create(ctx, l)
}

func publishApplied(ctx context.Context, c client.Client, names []string, agents []*l2member.Member) {
	for ctx.Err() == nil {
		var npcs v1alpha1.NodeProxyConfigList
		if err := c.List(ctx, &npcs); err == nil {
			sets := map[string][]string{}
			for _, x := range npcs.Items {
				for _, a := range x.Spec.Announcements {
					sets[l2.NodeOf(&x)] = append(sets[l2.NodeOf(&x)], a.IP)
				}
			}
			for i, name := range names {
				_ = agents[i].SetMeta(l2member.Meta{Ready: true, Applied: true, Hash: l2quorum.SetHash(sets[name])})
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func settled(ctx context.Context, c client.Client, n, services int) bool {
	p := &v1alpha1.L2AnnouncementPolicy{}
	// All but a couple: a hundred members in one process on a small shared machine
	// have the odd one flapping, which is no steady state of the code measured.
	if err := c.Get(ctx, client.ObjectKey{Name: "p"}, p); err != nil || int(p.Status.EligibleNodes) < n-n/50 {
		return false
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace("default")); err != nil {
		return false
	}
	ok := 0
	for _, s := range svcs.Items {
		if cond := conditions.Get(s.Status.Conditions, v1alpha1.ConditionL2Announced); cond != nil && cond.Status == metav1.ConditionTrue {
			ok++
		}
	}
	return ok == services
}

type writes struct {
	count  atomic.Int64
	mu     sync.Mutex
	byKind map[string]int
}

func (w *writes) reset() {
	w.count.Store(0)
	w.mu.Lock()
	w.byKind = map[string]int{}
	w.mu.Unlock()
}

func (w *writes) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for k, n := range w.byKind {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// watchWrites counts every change of the kinds the L2 components write.
func watchWrites(ctx context.Context, env *testenv.Env, ns string) (*writes, error) {
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, err
	}
	w := &writes{byKind: map[string]int{}}
	for _, l := range []struct {
		list client.ObjectList
		opts []client.ListOption
	}{
		{&v1alpha1.NodeProxyConfigList{}, nil}, {&v1alpha1.NodeProxyList{}, nil}, {&v1alpha1.L2AnnouncementPolicyList{}, nil},
		{&corev1.ServiceList{}, nil}, {&coordinationv1.LeaseList{}, []client.ListOption{client.InNamespace(ns)}},
		// events.k8s.io/v1 and core/v1 Events are one resource: watched once.
		{&eventsv1.EventList{}, nil},
	} {
		kind := strings.TrimSuffix(fmt.Sprintf("%T", l.list), "List")
		kind = kind[strings.LastIndex(kind, ".")+1:]
		if err := env.Client.List(ctx, l.list, l.opts...); err != nil {
			return nil, err
		}
		rv := l.list.(metav1.ListInterface).GetResourceVersion()
		watch, err := wc.Watch(ctx, l.list, append(l.opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})...)
		if err != nil {
			return nil, err
		}
		go func() {
			for range watch.ResultChan() {
				w.count.Add(1)
				w.mu.Lock()
				w.byKind[kind]++
				w.mu.Unlock()
			}
		}()
	}
	return w, nil
}
