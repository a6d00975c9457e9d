package lbipam

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portico-dev/portico/internal/lbipam"
)

var (
	poolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "portico", Subsystem: "lbipam", Name: "pool_addresses",
		Help: "Addresses of a LoadBalancerIPPool by family and state (total, used, available).",
	}, []string{"pool", "family", "state"})
	allocationFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "portico", Subsystem: "lbipam", Name: "allocation_failures_total",
		Help: "Service reconciles that left a request unsatisfied, by reason.",
	}, []string{"reason"})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() { metrics.Registry.MustRegister(poolAddresses, allocationFailures) })
}

func setPoolMetrics(pool string, st lbipam.PoolStatus) {
	deletePoolMetrics(pool)
	if st.IPv4 != nil {
		set(pool, "IPv4", st.IPv4.Total, st.IPv4.Used, st.IPv4.Available)
	}
	if st.IPv6 != nil {
		set(pool, "IPv6", st.IPv6.Total, st.IPv6.Used, st.IPv6.Available)
	}
}

func set(pool, family string, total, used, available int64) {
	poolAddresses.WithLabelValues(pool, family, "total").Set(float64(total))
	poolAddresses.WithLabelValues(pool, family, "used").Set(float64(used))
	poolAddresses.WithLabelValues(pool, family, "available").Set(float64(available))
}

func deletePoolMetrics(pool string) {
	poolAddresses.DeletePartialMatch(prometheus.Labels{"pool": pool})
}
