package agent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// What an operator asks of a busy agent: how often it syncs, what for, how long a
// sync takes, and which watch events it left alone.
var (
	syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "agent", Name: "syncs_total",
		Help: "Syncs of the node agent, by what they rebuilt: configs (select, render, serve, redirect map), endpoints (EDS only) or versions (the resourceVersions reported after status-only writes, no render).",
	}, []string{"kind"})
	syncSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "portico", Subsystem: "agent", Name: "sync_duration_seconds",
		Help:    "Duration of the node agent's syncs, by what they rebuilt (configs, endpoints).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"kind"})
	selectedConfigs = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "portico", Subsystem: "agent", Name: "selected_configs",
		Help: "NodeProxyConfigs selecting this node at the last sync.",
	})
	ignoredUpdates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "agent", Name: "ignored_updates_total",
		Help: "Watch updates that changed nothing a sync reads (a NodeProxyConfig's status, a Node's conditions), by kind.",
	}, []string{"type"})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() { metrics.Registry.MustRegister(syncs, syncSeconds, selectedConfigs, ignoredUpdates) })
}
