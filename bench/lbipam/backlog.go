//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/internal/testenv"
)

// The live phases create Services while they are being assigned, so on a small machine
// both the controller and the bare loop mostly wait for creates and the ratio between
// them is diluted. The backlog phases create all Services first and time only the
// assignment: a controller (re)started over N unassigned Services, against the bare loop
// working through the same N. That isolates the controller's own cost per Service.

// controllerBacklog creates the Services with no controller running, then starts it and
// times from process start until every Service shows an address.
func controllerBacklog(ctx context.Context, c config, k *kube, env *testenv.Env, bin, dir string) (phaseRow, error) {
	const run = "ctrlbl"
	row := phaseRow{phase: "controller, started over a backlog (from process start)", workers: 1, backlog: true}
	logf("%s: creating %d Services with no controller running", run, c.services)
	if err := k.createServices(ctx, run, c.services, nil); err != nil {
		return row, err
	}
	w, err := k.watchAssigned(run, c.services)
	if err != nil {
		return row, err
	}
	defer w.close()
	w.created.Store(int64(c.services))
	api0, err := k.scrape(ctx)
	if err != nil {
		return row, err
	}
	p, err := startController(bin, env.Kubeconfig, filepath.Join(dir, "controller-3.log"), nil)
	if err != nil {
		return row, err
	}
	defer func() { _ = p.stop(30 * time.Second) }()
	all, err := w.wait(ctx, run, c.timeout)
	if err != nil {
		return row, fmt.Errorf("%w\ncontroller log tail:\n%s", err, p.tail(20))
	}
	row.allSecs = all.Sub(p.started).Seconds()
	logf("%s: all %d assigned %.1fs after the controller started", run, c.services, row.allSecs)
	if _, err := settle(ctx, k, p, float64(c.services), 3*time.Second, c.timeout); err != nil {
		return row, err
	}
	api1, err := k.scrape(ctx)
	if err != nil {
		return row, err
	}
	row.api = api1.minus(api0)
	logf("%s: status writes %.0f, event writes %.0f, pool status writes %.0f", run, row.api.statusWrites, row.api.eventWrites, row.api.poolStatusWrites)
	if row.rssMB, err = p.peakRSSMB(); err != nil {
		return row, err
	}
	if err := p.stop(30 * time.Second); err != nil {
		return row, err
	}
	logf("deleting the %s Services", run)
	return row, k.deleteRun(ctx, run)
}

// bareBacklog creates the Services first, then times the bare loop over all of them.
func bareBacklog(ctx context.Context, c config, k *kube, workers int) (phaseRow, error) {
	run := fmt.Sprintf("barebl%d", workers)
	row := phaseRow{phase: fmt.Sprintf("bare loop over a backlog, %d worker(s)", workers), workers: workers, backlog: true}
	queue := make(chan types.NamespacedName, c.services)
	logf("%s: creating %d Services", run, c.services)
	if err := k.createServices(ctx, run, c.services, func(key types.NamespacedName) { queue <- key }); err != nil {
		return row, err
	}
	close(queue)
	w, err := k.watchAssigned(run, c.services)
	if err != nil {
		return row, err
	}
	defer w.close()
	w.created.Store(int64(c.services))
	api0, err := k.scrape(ctx)
	if err != nil {
		return row, err
	}
	start := time.Now()
	loopErr := make(chan error, 1)
	go func() { loopErr <- k.bareLoop(ctx, queue, workers, netip.MustParseAddr("10.202.0.0")) }()
	all, err := w.wait(ctx, run, c.timeout)
	if lerr := <-loopErr; lerr != nil {
		return row, lerr
	}
	if err != nil {
		return row, err
	}
	row.allSecs = all.Sub(start).Seconds()
	logf("%s: all %d assigned after %.1fs", run, c.services, row.allSecs)
	if _, err := settle(ctx, k, nil, 0, 2*time.Second, c.timeout); err != nil {
		return row, err
	}
	api1, err := k.scrape(ctx)
	if err != nil {
		return row, err
	}
	row.api = api1.minus(api0)
	logf("deleting the %s Services", run)
	return row, k.deleteRun(ctx, run)
}
