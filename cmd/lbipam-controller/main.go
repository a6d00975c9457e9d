// Command lbipam-controller gives LoadBalancer Services addresses from LoadBalancerIPPools
// and serves the pools' validating webhook.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	var (
		opts           lbipam.Options
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
	flag.BoolVar(&opts.RequireLBClass, "require-lb-class", false, "serve only Services with loadBalancerClass portico.dev/lbipam")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that two replicas can run")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's)")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&enableWebhook, "enable-webhook", true, "serve the LoadBalancerIPPool validating webhook")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "port of the webhook server")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "directory with tls.crt and tls.key for the webhook server")
	// One status write per Service: at controller-runtime's default 20 QPS, 10,000 new
	// Services would take over 8 minutes of client-side throttling alone.
	flag.Float64Var(&qps, "kube-api-qps", 200, "queries per second to the apiserver")
	flag.IntVar(&burst, "kube-api-burst", 400, "burst of queries to the apiserver")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("lbipam-controller")

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "portico-lbipam",
		LeaderElectionNamespace: leaderNS,
		WebhookServer:           webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir}),
		// LB-IPAM never reads managedFields; with 10,000 Services they are most of the cache.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := lbipam.Setup(mgr, opts); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if enableWebhook {
		if err := webhooks.SetupIPPoolWebhook(mgr); err != nil {
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
