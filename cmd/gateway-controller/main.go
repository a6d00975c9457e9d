// Command gateway-controller serves the Gateway API (GatewayClasses whose
// controllerName is portico.dev/gateway-controller, their Gateways, HTTPRoutes,
// GRPCRoutes and TLSRoutes) by writing NodeProxyConfigs for the node agents and
// one LoadBalancer Service per Gateway for LB-IPAM, and the validating webhook
// of GatewayClassConfig, the GatewayClasses' parameters.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/controllers/gateway"
	"github.com/portico-dev/portico/internal/managerflags"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	var controllerName string
	flag.StringVar(&controllerName, "controller-name", string(translate.ControllerName), "spec.controllerName of the GatewayClasses served")
	// A full resync writes one NodeProxyConfig per changed route: at the default
	// 20 QPS, thousands of new routes would spend minutes throttled.
	mf := managerflags.Register(flag.CommandLine, managerflags.Options{LeaderElectionID: "portico-gateway",
		Webhook: "GatewayClassConfig", QPS: 200, Burst: 400})
	flag.Parse()
	mf.SetupLogger()
	log := ctrl.Log.WithName("gateway-controller")

	// Configs are written whole and read back for their status only.
	opts := ctrl.Options{}
	npcwriter.TrimCache(&opts.Cache)
	mgr, err := mf.Manager(opts)
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := gateway.Setup(mgr, gateway.Options{ControllerName: gatewayv1.GatewayController(controllerName)}); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if mf.EnableWebhook {
		if err := webhooks.SetupGatewayClassConfigWebhook(mgr); err != nil {
			log.Error(err, "setting up the webhook")
			os.Exit(1)
		}
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
