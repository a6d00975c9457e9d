// Command lbipam-controller gives LoadBalancer Services addresses from LoadBalancerIPPools
// and serves the validating webhooks of pools and NodeProxyConfigs.
package main

import (
	"flag"
	"os"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/managerflags"
	"github.com/portico-dev/portico/internal/vipguard"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	var opts lbipam.Options
	flag.BoolVar(&opts.RequireLBClass, "require-lb-class", false, "serve only Services with loadBalancerClass portico.dev/lbipam")
	// One status write per Service: at controller-runtime's default 20 QPS, 10,000 new
	// Services would take over 8 minutes of client-side throttling alone.
	mf := managerflags.Register(flag.CommandLine, managerflags.Options{
		LeaderElectionID: "portico-lbipam", Webhook: "LoadBalancerIPPool and NodeProxyConfig", QPS: 200, Burst: 400})
	flag.Parse()
	mf.SetupLogger()
	log := ctrl.Log.WithName("lbipam-controller")

	mgr, err := mf.Manager(ctrl.Options{
		// Of Nodes, the NodeProxyConfig webhook reads only the addresses. (managerflags
		// strips every object's managedFields: with 10,000 Services they were most of
		// LB-IPAM's cache.)
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{&corev1.Node{}: {Transform: vipguard.TrimNode}},
		},
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := lbipam.Setup(mgr, opts); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if mf.EnableWebhook {
		if err := webhooks.SetupIPPoolWebhook(mgr); err != nil {
			log.Error(err, "setting up the webhook")
			os.Exit(1)
		}
		// Served here because LB-IPAM is the controller every Portico install runs; the
		// node agents enforce the same rule for their own node without it.
		if err := webhooks.SetupNodeProxyConfigWebhook(mgr); err != nil {
			log.Error(err, "setting up the NodeProxyConfig webhook")
			os.Exit(1)
		}
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
