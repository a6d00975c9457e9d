package npcstatus

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The loop's two questions at 3 a.m.: is it writing, and is it behind.
var (
	statusWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "npcstatus", Name: "status_writes_total",
		Help: "NodeProxyConfig status writes by the producer's status loop, by result (ok, error).",
	}, []string{"producer", "result"})
	statusBacklog = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "portico", Subsystem: "npcstatus", Name: "backlog",
		Help: "NodeProxyConfig statuses the last pass left for later passes (MaxWritesPerPass reached).",
	}, []string{"producer"})
	statusPasses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "npcstatus", Name: "passes_total",
		Help: "Passes of the producer's status loop, by kind: full (every config judged: the first pass, a node that changed in more than progress) or partial (only configs that moved or may still move).",
	}, []string{"producer", "kind"})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() { metrics.Registry.MustRegister(statusWrites, statusBacklog, statusPasses) })
}
