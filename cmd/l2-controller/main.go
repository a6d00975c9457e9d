// Command l2-controller assigns each Service address selected by an L2AnnouncementPolicy
// to one node with a live agent heartbeat, and serves the policies' validating webhook.
package main

import (
	"flag"
	"os"

	coordinationv1 "k8s.io/api/coordination/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	var (
		opts           l2.Options
		leaderElect    bool
		leaderNS       string
		metricsAddr    string
		probeAddr      string
		webhookPort    int
		webhookCertDir string
		enableWebhook  bool
		qps            float64
		burst          int
	)
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = l2.DefaultNamespace
	}
	flag.StringVar(&opts.Namespace, "namespace", defaultNS, "install namespace holding the agents' heartbeat Leases (default: $POD_NAMESPACE or portico-system)")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that two replicas can run")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's)")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&enableWebhook, "enable-webhook", true, "serve the L2AnnouncementPolicy validating webhook")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "port of the webhook server")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "directory with tls.crt and tls.key for the webhook server")
	// Writes happen only when an assignment changes, but a node failure moves its whole
	// share at once: one NodeProxyConfig per node, plus one condition per moved Service.
	flag.Float64Var(&qps, "kube-api-qps", 200, "queries per second to the apiserver")
	flag.IntVar(&burst, "kube-api-burst", 400, "burst of queries to the apiserver")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("l2-controller")

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme.New(),
		// Only the heartbeat Leases of the install namespace are watched: every kubelet
		// renews a node Lease in kube-node-lease, which this controller has no use for.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
		}},
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "portico-l2",
		LeaderElectionNamespace: leaderNS,
		WebhookServer:           webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir}),
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := l2.Setup(mgr, opts); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if enableWebhook {
		if err := webhooks.SetupL2PolicyWebhook(mgr); err != nil {
			log.Error(err, "setting up the webhook")
			os.Exit(1)
		}
	}
	_ = mgr.AddHealthzCheck("healthz", healthz.Ping)
	_ = mgr.AddReadyzCheck("readyz", healthz.Ping)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
