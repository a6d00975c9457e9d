// Command ingress-controller serves Kubernetes Ingresses of the IngressClass
// portico (controller portico.dev/ingress-controller) by writing NodeProxyConfigs
// for the node agents and LoadBalancer Services for LB-IPAM.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/internal/scheme"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

func main() {
	var (
		opts        ingress.Options
		defaultMode string
		leaderElect bool
		leaderNS    string
		metricsAddr string
		probeAddr   string
		qps         float64
		burst       int
	)
	flag.StringVar(&opts.InstallNamespace, "install-namespace", "portico-system", "namespace of the shared Service portico-ingress")
	flag.StringVar(&defaultMode, "default-lb-mode", string(translate.ModeShared), "load balancer mode of Ingresses without the "+translate.AnnotationLoadBalancerMode+" annotation: shared or dedicated")
	flag.StringVar(&opts.ClassName, "ingress-class", "portico", "name of the IngressClass served")
	flag.BoolVar(&opts.CreateClass, "create-ingress-class", true, "create the IngressClass at start if it does not exist (an existing one is never changed)")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that two replicas can run")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's)")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	// A full resync writes one NodeProxyConfig per changed Ingress: at the default
	// 20 QPS, 5,000 new Ingresses would take over 4 minutes of throttling alone.
	flag.Float64Var(&qps, "kube-api-qps", 200, "queries per second to the apiserver")
	flag.IntVar(&burst, "kube-api-burst", 400, "burst of queries to the apiserver")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("ingress-controller")

	mode, err := translate.ParseMode(defaultMode)
	if err != nil {
		log.Error(err, "--default-lb-mode")
		os.Exit(2)
	}
	opts.DefaultMode = mode

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "portico-ingress",
		LeaderElectionNamespace: leaderNS,
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := ingress.Setup(mgr, opts); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	_ = mgr.AddHealthzCheck("healthz", healthz.Ping)
	_ = mgr.AddReadyzCheck("readyz", healthz.Ping)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
