// Command ingress-controller serves Kubernetes Ingresses of the IngressClass
// portico (controller portico.dev/ingress-controller) by writing NodeProxyConfigs
// for the node agents and LoadBalancer Services for LB-IPAM.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portico-dev/portico/controllers/ingress"
	"github.com/portico-dev/portico/internal/managerflags"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/ingress"
)

func main() {
	var (
		opts        ingress.Options
		defaultMode string
	)
	flag.StringVar(&opts.InstallNamespace, "install-namespace", "portico-system", "namespace of the shared Service portico-ingress")
	flag.StringVar(&defaultMode, "default-lb-mode", string(translate.ModeShared), "load balancer mode of Ingresses without the "+translate.AnnotationLoadBalancerMode+" annotation: shared or dedicated")
	flag.StringVar(&opts.ClassName, "ingress-class", "portico", "name of the IngressClass served")
	flag.BoolVar(&opts.CreateClass, "create-ingress-class", true, "create the IngressClass at start if it does not exist (an existing one is never changed)")
	flag.BoolVar(&opts.AllowCrossNamespaceHosts, "allow-cross-namespace-hosts", false, "let Ingresses of every namespace add paths to a host of the shared load balancer (default: a host belongs to the namespace of the oldest Ingress claiming it)")
	// A full resync writes one NodeProxyConfig per changed Ingress: at the default
	// 20 QPS, 5,000 new Ingresses would take over 4 minutes of throttling alone.
	mf := managerflags.Register(flag.CommandLine, managerflags.Options{LeaderElectionID: "portico-ingress", QPS: 200, Burst: 400})
	flag.Parse()
	mf.SetupLogger()
	log := ctrl.Log.WithName("ingress-controller")

	mode, err := translate.ParseMode(defaultMode)
	if err != nil {
		log.Error(err, "--default-lb-mode")
		os.Exit(2)
	}
	opts.DefaultMode = mode

	// Configs are written whole and read back for their status only.
	mopts := ctrl.Options{}
	npcwriter.TrimCache(&mopts.Cache)
	mgr, err := mf.Manager(mopts)
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := ingress.Setup(mgr, opts); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
