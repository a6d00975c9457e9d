//go:build linux

// Command lbipam measures LB-IPAM end to end on a local control plane (real kube-apiserver
// and etcd from internal/testenv) and prints the figures the scale issue asks for:
//
//   - N LoadBalancer Services created → all assigned by the lbipam-controller binary:
//     seconds, apiserver writes per Service, the controller's peak RSS;
//   - the same for a bare loop that only server-side-applies Service status, so the
//     controller's own overhead shows as a ratio (goal: within 1.5×);
//   - restarting the controller with N assigned Services: changed addresses (goal: 0).
//
// Speed and memory are measured here rather than asserted in tests, where a loaded CI
// machine would make them flaky. Linux only: peak RSS comes from /proc.
//
//	go run ./bench/lbipam [-services 10000] [-concurrency 16] [-out results.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/testenv"
)

type config struct {
	services    int
	concurrency int
	namespaces  int
	bareWorkers []int
	timeout     time.Duration
	out         string
	keep        bool
	backlog     bool
	bin         string
}

func main() {
	var c config
	var bare string
	flag.IntVar(&c.services, "services", 10000, "LoadBalancer Services per phase")
	flag.IntVar(&c.concurrency, "concurrency", 16, "parallel creates (and deletes) of Services")
	flag.IntVar(&c.namespaces, "namespaces", 4, "namespaces the Services of a phase are spread over")
	flag.StringVar(&bare, "bare-workers", "1,16", "comma-separated worker counts of the bare status-write loop; "+
		"1 matches the controller (one reconcile worker behind one lock)")
	flag.DurationVar(&c.timeout, "timeout", 20*time.Minute, "give up on a phase after this long")
	flag.StringVar(&c.out, "out", "", "also write the results as markdown to this file")
	flag.StringVar(&c.bin, "controller-bin", "", "measure this lbipam-controller binary instead of building ./cmd/lbipam-controller "+
		"(to compare a change against the tree)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (controller binary and logs)")
	flag.BoolVar(&c.backlog, "backlog", false, "also time assignment of N pre-created Services (controller started over them, "+
		"and the bare loop with the first -bare-workers count), which takes the create rate out of the figure")
	flag.Parse()
	for _, f := range strings.Split(bare, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		w, err := strconv.Atoi(f)
		if err != nil || w < 1 {
			fmt.Fprintf(os.Stderr, "-bare-workers: %q is not a positive number\n", f)
			os.Exit(2)
		}
		c.bareWorkers = append(c.bareWorkers, w)
	}
	// envtest logs through controller-runtime; without a logger it prints a warning with a stack.
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench/lbipam:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// phaseRow is one line of the main table.
type phaseRow struct {
	phase      string
	workers    int
	createSecs float64 // first create → last create returned
	allSecs    float64 // first create → every Service shows an address
	api        apiCounts
	rssMB      float64 // 0: not measured
	controller bool    // the lbipam-controller binary, rather than the bare loop
	backlog    bool    // Services created before the clock started
}

type restartRow struct {
	adoptedSecs, settledSecs         float64
	api                              apiCounts
	changed, heldTwice, unassigned   int
	reconciles, reconcileErrs, rssMB float64
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "portico-bench-lbipam-")
	if err != nil {
		return err
	}
	if c.keep {
		logf("work directory (kept): %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := c.bin
	if bin == "" {
		logf("building cmd/lbipam-controller")
		if bin, err = buildController(dir); err != nil {
			return err
		}
	}
	logf("starting kube-apiserver and etcd")
	// envtest's default service CIDR is a /24: far too small for N ClusterIPs.
	env, err := testenv.Start(testenv.Options{APIServerArgs: map[string]string{"service-cluster-ip-range": "10.96.0.0/12"}})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}()
	k, err := newKube(env.Config, c)
	if err != nil {
		return err
	}

	rows, rr, err := controllerPhase(ctx, c, k, env, bin, dir)
	if err != nil {
		return err
	}
	for _, w := range c.bareWorkers {
		row, err := barePhase(ctx, c, k, w)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if c.backlog && len(c.bareWorkers) > 0 {
		row, err := controllerBacklog(ctx, c, k, env, bin, dir)
		if err != nil {
			return err
		}
		row.controller = true
		rows = append(rows, row)
		if row, err = bareBacklog(ctx, c, k, c.bareWorkers[0]); err != nil {
			return err
		}
		rows = append(rows, row)
	}
	report := render(c, rows, rr)
	fmt.Print(report)
	if c.out != "" {
		return os.WriteFile(c.out, []byte(report), 0o644)
	}
	return nil
}

func newKube(base *rest.Config, c config) (*kube, error) {
	// The bench must never be the bottleneck it measures: client-go's default 5 QPS would be.
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.UserAgent = "portico-bench-lbipam"
	jsonCS, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pb := rest.CopyConfig(cfg)
	pb.ContentType = "application/vnd.kubernetes.protobuf"
	pb.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(pb)
	if err != nil {
		return nil, err
	}
	return &kube{cs: cs, metrics: jsonCS, concurrency: c.concurrency, namespaces: c.namespaces}, nil
}

func (k *kube) scrape(ctx context.Context) (apiCounts, error) {
	return scrapeAPIServer(ctx, k.metrics.CoreV1().RESTClient())
}

// controllerPhase runs phase A (create → all assigned with the controller) and the
// restart check, then stops the controller and deletes the Services.
func controllerPhase(ctx context.Context, c config, k *kube, env *testenv.Env, bin, dir string) ([]phaseRow, restartRow, error) {
	var rr restartRow
	p1, err := startController(bin, env.Kubeconfig, filepath.Join(dir, "controller-1.log"), nil)
	if err != nil {
		return nil, rr, err
	}
	defer func() { _ = p1.stop(30 * time.Second) }()
	// The pool exists and is Ready before the first Service, so that no Service is first
	// refused (NoPool) and retried: the figure is the steady-state cost of an assignment.
	pool := &v1alpha1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec:       v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.200.0.0/16"}}},
	}
	if err := env.Client.Create(ctx, pool); err != nil {
		return nil, rr, err
	}
	if err := waitPoolReady(ctx, env, p1, pool.Name); err != nil {
		return nil, rr, err
	}

	row, err := measure(ctx, c, k, "ctrl", 1, nil, func() error {
		_, err := settle(ctx, k, p1, 0, 3*time.Second, c.timeout)
		return err
	})
	if err != nil {
		return nil, rr, fmt.Errorf("%w\ncontroller log tail:\n%s", err, p1.tail(20))
	}
	row.phase, row.controller = "controller (lbipam-controller binary)", true
	if row.rssMB, err = p1.peakRSSMB(); err != nil {
		return nil, rr, err
	}
	logf("controller: peak RSS %.0f MB", row.rssMB)
	c1, err := scrapeController(ctx, p1.metricsURL)
	if err != nil {
		return nil, rr, err
	}
	logf("controller: %.0f service reconciles (%.0f errors), client PATCH %.0f, POST %.0f, error log lines %d",
		c1.serviceReconciles, c1.serviceErrors, c1.clientPatches, c1.clientPosts, p1.errorLines())

	// Restart: SIGTERM, start again, wait until the new process has reconciled every
	// Service and gone quiet, then compare every address.
	before, err := k.snapshot(ctx, "ctrl")
	if err != nil {
		return nil, rr, err
	}
	api0, err := k.scrape(ctx)
	if err != nil {
		return nil, rr, err
	}
	logf("restart: stopping the controller (SIGTERM)")
	if err := p1.stop(30 * time.Second); err != nil {
		return nil, rr, err
	}
	p2, err := startController(bin, env.Kubeconfig, filepath.Join(dir, "controller-2.log"), nil)
	if err != nil {
		return nil, rr, err
	}
	defer func() { _ = p2.stop(30 * time.Second) }()
	adopted, err := p2.waitLog(ctx, "LB-IPAM state adopted", 5*time.Minute)
	if err != nil {
		return nil, rr, err
	}
	rr.adoptedSecs = adopted.Sub(p2.started).Seconds()
	settled, err := settle(ctx, k, p2, float64(c.services), 5*time.Second, c.timeout)
	if err != nil {
		return nil, rr, fmt.Errorf("%w\ncontroller log tail:\n%s", err, p2.tail(20))
	}
	rr.settledSecs = settled.Sub(p2.started).Seconds()
	api1, err := k.scrape(ctx)
	if err != nil {
		return nil, rr, err
	}
	rr.api = api1.minus(api0)
	after, err := k.snapshot(ctx, "ctrl")
	if err != nil {
		return nil, rr, err
	}
	rr.changed, rr.heldTwice, rr.unassigned = compareSnapshots(before, after)
	c2, err := scrapeController(ctx, p2.metricsURL)
	if err != nil {
		return nil, rr, err
	}
	rr.reconciles, rr.reconcileErrs = c2.serviceReconciles, c2.serviceErrors
	if rr.rssMB, err = p2.peakRSSMB(); err != nil {
		return nil, rr, err
	}
	logf("restart: adopted after %.1fs, settled after %.1fs, %d addresses changed, %d held twice, %d unassigned, "+
		"%.0f status writes, %.0f event writes, peak RSS %.0f MB",
		rr.adoptedSecs, rr.settledSecs, rr.changed, rr.heldTwice, rr.unassigned, rr.api.statusWrites, rr.api.eventWrites, rr.rssMB)
	if err := p2.stop(30 * time.Second); err != nil {
		return nil, rr, err
	}
	// The bare phases start from an empty set of Services too.
	logf("deleting the controller phase's Services")
	return []phaseRow{row}, rr, k.deleteRun(ctx, "ctrl")
}

func waitPoolReady(ctx context.Context, env *testenv.Env, p *controllerProc, name string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pool := &v1alpha1.LoadBalancerIPPool{}
		if err := env.Client.Get(ctx, types.NamespacedName{Name: name}, pool); err != nil {
			return err
		}
		if cond := conditions.Get(pool.Status.Conditions, v1alpha1.ConditionReady); cond != nil && cond.Status == metav1.ConditionTrue {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("pool %s not Ready after 2 minutes; controller log tail:\n%s", name, p.tail(20))
}

// barePhase runs the baseline loop with the given number of workers.
func barePhase(ctx context.Context, c config, k *kube, workers int) (phaseRow, error) {
	run := fmt.Sprintf("bare%d", workers)
	queue := make(chan types.NamespacedName, c.services)
	loopDone := make(chan error, 1)
	go func() { loopDone <- k.bareLoop(ctx, queue, workers, netip.MustParseAddr("10.201.0.0")) }()
	row, err := measure(ctx, c, k, run, workers, func(key types.NamespacedName) { queue <- key }, func() error {
		close(queue)
		if err := <-loopDone; err != nil {
			return err
		}
		_, err := settle(ctx, k, nil, 0, 2*time.Second, c.timeout)
		return err
	})
	if err != nil {
		return row, err
	}
	row.phase = fmt.Sprintf("bare status-write loop, %d worker(s)", workers)
	logf("deleting the %s Services", run)
	return row, k.deleteRun(ctx, run)
}

// measure creates c.services Services for run, hands each to created, and times until
// all show an address; then calls quiesce (which waits for stray writes) and counts the
// apiserver writes of the whole phase.
func measure(ctx context.Context, c config, k *kube, run string, workers int, created func(types.NamespacedName), quiesce func() error) (phaseRow, error) {
	row := phaseRow{workers: workers}
	w, err := k.watchAssigned(run, c.services)
	if err != nil {
		return row, err
	}
	defer w.close()
	api0, err := k.scrape(ctx)
	if err != nil {
		return row, err
	}
	logf("%s: creating %d Services", run, c.services)
	start := time.Now()
	createErr := make(chan error, 1)
	// A failed create stops the wait at once instead of after the phase timeout.
	wctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	go func() {
		err := k.createServices(ctx, run, c.services, func(key types.NamespacedName) {
			w.created.Add(1)
			if created != nil {
				created(key)
			}
		})
		row.createSecs = time.Since(start).Seconds()
		if err != nil {
			stopWait()
		}
		createErr <- err
	}()
	all, err := w.wait(wctx, run, c.timeout)
	if cerr := <-createErr; cerr != nil {
		return row, cerr
	}
	if err != nil {
		return row, err
	}
	row.allSecs = all.Sub(start).Seconds()
	logf("%s: all %d assigned after %.1fs (creates took %.1fs)", run, c.services, row.allSecs, row.createSecs)
	if err := quiesce(); err != nil {
		return row, err
	}
	api1, err := k.scrape(ctx)
	if err != nil {
		return row, err
	}
	row.api = api1.minus(api0)
	// Logged as soon as known, so that an interrupted run still leaves its figures.
	logf("%s: writes per Service: status %.2f (%.0f failed), events %.2f, pool status %.2f; Service creates %.0f",
		run, row.api.statusWrites/float64(c.services), row.api.statusFailed, row.api.eventWrites/float64(c.services),
		row.api.poolStatusWrites/float64(c.services), row.api.serviceCreates)
	return row, nil
}

// settle waits until the controller (when p is set) has done at least minReconciles
// Service reconciles with empty queues, and the apiserver has seen no status, event or
// pool-status write for quiet. It returns when that state began.
func settle(ctx context.Context, k *kube, p *controllerProc, minReconciles float64, quiet, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	last := -1.0
	var changed, ready time.Time
	for time.Now().Before(deadline) {
		now := time.Now()
		api, err := k.scrape(ctx)
		if err != nil {
			return time.Time{}, err
		}
		if w := api.controllerWrites(); w != last {
			last, changed = w, now
		}
		caughtUp := true
		if p != nil {
			cc, err := scrapeController(ctx, p.metricsURL)
			if err != nil {
				return time.Time{}, err
			}
			caughtUp = cc.serviceReconciles >= minReconciles && cc.queued == 0
		}
		switch {
		case !caughtUp:
			ready = time.Time{}
		case ready.IsZero():
			ready = now
		}
		if !ready.IsZero() {
			since := ready
			if changed.After(since) {
				since = changed
			}
			if now.Sub(since) >= quiet {
				return since, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return time.Time{}, fmt.Errorf("not settled within %s", timeout)
}

// compareSnapshots counts Services whose addresses differ between before and after,
// addresses held by more than one Service after, and Services left without one.
func compareSnapshots(before, after map[types.NamespacedName][]string) (changed, heldTwice, unassigned int) {
	holders := map[string]int{}
	for key, ips := range after {
		if !slices.Equal(before[key], ips) {
			changed++
		}
		if len(ips) == 0 {
			unassigned++
		}
		for _, ip := range ips {
			holders[ip]++
		}
	}
	for key := range before {
		if _, ok := after[key]; !ok {
			changed++
		}
	}
	for _, n := range holders {
		if n > 1 {
			heldTwice++
		}
	}
	return changed, heldTwice, unassigned
}

func render(c config, rows []phaseRow, rr restartRow) string {
	var b strings.Builder
	n := float64(c.services)
	fmt.Fprintf(&b, "\n## LB-IPAM end to end, %d Services (%d creators, %d namespaces, %d CPUs)\n\n",
		c.services, c.concurrency, c.namespaces, runtime.NumCPU())
	b.WriteString("| phase | Services | workers | creates done s | all assigned s | Services/s | status writes/Svc | event writes/Svc | pool status writes/Svc | all LB-IPAM writes/Svc | failed status writes | peak RSS MB |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		rss, created := "n/a", "before"
		if r.rssMB > 0 {
			rss = fmt.Sprintf("%.0f", r.rssMB)
		}
		if !r.backlog {
			created = fmt.Sprintf("%.1f", r.createSecs)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %.1f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %s |\n",
			r.phase, c.services, r.workers, created, r.allSecs, n/r.allSecs,
			r.api.statusWrites/n, r.api.eventWrites/n, r.api.poolStatusWrites/n, r.api.controllerWrites()/n, r.api.statusFailed, rss)
	}
	b.WriteString("\n")
	for _, ctl := range rows {
		for _, r := range rows {
			if !ctl.controller || r.controller || r.backlog != ctl.backlog {
				continue
			}
			ratio := ctl.allSecs / r.allSecs
			verdict := "meets"
			if ratio > 1.5 {
				verdict = "misses"
			}
			fmt.Fprintf(&b, "- %s / %s: **%.2f×** (goal ≤ 1.5×: %s)\n", ctl.phase, r.phase, ratio, verdict)
		}
	}
	fmt.Fprintf(&b, "\n### Restart with %d assigned Services\n\n", c.services)
	b.WriteString("| adopted after s | settled after s | Service reconciles | reconcile errors | status writes | event writes | changed addresses | addresses held twice | unassigned | peak RSS MB |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | **%d** | %d | %d | %.0f |\n\n",
		rr.adoptedSecs, rr.settledSecs, rr.reconciles, rr.reconcileErrs, rr.api.statusWrites, rr.api.eventWrites,
		rr.changed, rr.heldTwice, rr.unassigned, rr.rssMB)
	b.WriteString("Seconds run from the first create, creates running concurrently with assignment, except in backlog rows, " +
		"which create every Service first and time assignment alone (the controller's from its process start). " +
		"Writes are the apiserver's own apiserver_request_total counters over the phase. " +
		"Peak RSS is the controller process's VmHWM; the bare loop runs inside the bench process, so it has none.\n")
	return b.String()
}
