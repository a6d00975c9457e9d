package ingress_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/testnode"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

// BenchmarkStatusWrites is issue 11's bound on the Programmed loop: with 5,000
// Ingresses served by 3 nodes (real agents with Envoy-like proxies), how many
// NodeProxyConfig status writes a steady state causes per second, and how many one
// Ingress change causes until its config is Programmed on 3/3 nodes again. Status
// writes are the MODIFIED events of the ingress producer's configs that leave the
// generation unchanged, counted from a watch.
//
//	go test ./controllers/ingress/ -run '^$' -bench StatusWrites -benchtime 20x -timeout 60m
func BenchmarkStatusWrites(b *testing.B) {
	setupScale(b)
	ctx := context.Background()
	// Two more nodes, started once for every round: restarted per round, each new
	// agent would move every config's verdict twice (5,000 status writes each time,
	// at the client's QPS), and the next round would measure that catch-up, not a
	// steady state.
	statusNodes.once.Do(func() {
		for _, name := range []string{"bench-node-2", "bench-node-3"} {
			n, err := testnode.Start(ctx, env.Config, k8s, name, testnode.Options{Namespace: installNS})
			if err != nil {
				statusNodes.err = err
				return
			}
			suiteStops = append(suiteStops, n.Stop)
		}
	})
	if statusNodes.err != nil {
		b.Fatal(statusNodes.err)
	}
	start := time.Now()
	if err := waitAllProgrammed(ctx, 3, 30*time.Minute); err != nil {
		b.Fatal(err)
	}
	b.Logf("all %d configs programmed on 3/3 nodes after %s", benchIngresses+1, time.Since(start).Round(time.Second))

	counter := newStatusCounter(b, ctx)
	defer counter.stop()
	time.Sleep(2 * time.Second) // let in-flight writes of the ramp-up drain
	counter.reset()
	const steady = 10 * time.Second
	time.Sleep(steady)
	// Reported after the loop: ResetTimer clears the metrics reported before it.
	steadyRate := float64(counter.reset()) / steady.Seconds()
	b.Logf("steady state: %.2f status writes/s over %v", steadyRate, steady)

	var total int
	b.ResetTimer()
	for n := range b.N {
		changeOne(b, ctx, n)
		key := types.NamespacedName{Namespace: benchNS((benchSeq * 7919) % benchIngresses), Name: benchName((benchSeq * 7919) % benchIngresses)}
		if err := waitProgrammed(ctx, translate.ConfigName(key), 3, time.Minute); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second) // writes that would follow the verdict settling
		total += counter.reset()
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/float64(b.N), "status-writes/change")
	b.ReportMetric(steadyRate, "steady-writes/s")
}

var statusNodes struct {
	once sync.Once
	err  error
}

type statusCounter struct {
	w      watch.Interface
	events chan struct{}
	count  chan chan int
}

func newStatusCounter(b *testing.B, ctx context.Context) *statusCounter {
	var list v1alpha1.NodeProxyConfigList
	if err := k8s.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelProducer: translate.Producer}); err != nil {
		b.Fatal(err)
	}
	w, err := watcher.Watch(ctx, &v1alpha1.NodeProxyConfigList{}, client.MatchingLabels{v1alpha1.LabelProducer: translate.Producer},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		b.Fatal(err)
	}
	c := &statusCounter{w: w, count: make(chan chan int)}
	gens := map[string]int64{}
	for i := range list.Items {
		gens[list.Items[i].Name] = list.Items[i].Generation
	}
	go func() {
		n := 0
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				cfg, isCfg := ev.Object.(*v1alpha1.NodeProxyConfig)
				if !isCfg {
					continue
				}
				if ev.Type == watch.Modified && gens[cfg.Name] == cfg.Generation {
					n++
				}
				gens[cfg.Name] = cfg.Generation
			case reply := <-c.count:
				reply <- n
				n = 0
			}
		}
	}()
	return c
}

// reset returns the status writes since the last reset.
func (c *statusCounter) reset() int {
	reply := make(chan int)
	c.count <- reply
	return <-reply
}

func (c *statusCounter) stop() { c.w.Stop() }

func waitProgrammed(ctx context.Context, name string, nodes int32, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		cfg := &v1alpha1.NodeProxyConfig{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
			return err
		}
		if conditions.IsTrue(cfg.Status.Conditions, cfg.Generation, v1alpha1.ConditionProgrammed) && cfg.Status.ProgrammedNodes == nodes {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (generation %d) not programmed on %d nodes: %+v", name, cfg.Generation, nodes, cfg.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitAllProgrammed(ctx context.Context, nodes int32, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var list v1alpha1.NodeProxyConfigList
		if err := k8s.List(ctx, &list, client.MatchingLabels{v1alpha1.LabelProducer: translate.Producer}); err != nil {
			return err
		}
		missing := 0
		var examples []string
		for i := range list.Items {
			c := &list.Items[i]
			if !conditions.IsTrue(c.Status.Conditions, c.Generation, v1alpha1.ConditionProgrammed) || c.Status.ProgrammedNodes != nodes {
				missing++
				if len(examples) < 5 {
					cond := conditions.Get(c.Status.Conditions, v1alpha1.ConditionProgrammed)
					examples = append(examples, fmt.Sprintf("%s (generation %d, resourceVersion %s): %+v", c.Name, c.Generation, c.ResourceVersion, cond))
				}
			}
		}
		if missing == 0 && len(list.Items) > benchIngresses {
			return nil
		}
		if time.Now().After(deadline) {
			var nps v1alpha1.NodeProxyList
			_ = k8s.List(ctx, &nps)
			for _, np := range nps.Items {
				examples = append(examples, fmt.Sprintf("NodeProxy %s: applied %s, programmed %s, rejected %d", np.Name,
					np.Status.AppliedResourceVersion, np.Status.ProgrammedResourceVersion, len(np.Status.Rejected)))
			}
			return fmt.Errorf("%d of %d configs not programmed on %d nodes, e.g.\n%s", missing, len(list.Items), nodes, strings.Join(examples, "\n"))
		}
		time.Sleep(2 * time.Second)
	}
}
