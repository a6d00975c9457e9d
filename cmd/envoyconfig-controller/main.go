// Command envoyconfig-controller serves EnvoyConfigs and ClusterEnvoyConfigs: it
// writes one NodeProxyConfig per config for the node agents, reports Accepted and
// Programmed on each, and serves their validating webhook.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portico-dev/portico/controllers/envoyconfig"
	"github.com/portico-dev/portico/internal/managerflags"
	"github.com/portico-dev/portico/internal/npcwriter"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	// A cold start writes one NodeProxyConfig and one status per config: at the
	// default 20 QPS, 1,000 configs would take over a minute of throttling alone.
	mf := managerflags.Register(flag.CommandLine, managerflags.Options{LeaderElectionID: "portico-envoyconfig",
		Webhook: "EnvoyConfig and ClusterEnvoyConfig", QPS: 200, Burst: 400})
	flag.Parse()
	mf.SetupLogger()
	log := ctrl.Log.WithName("envoyconfig-controller")

	// Configs are written whole and read back for their status only.
	opts := ctrl.Options{}
	npcwriter.TrimCache(&opts.Cache)
	mgr, err := mf.Manager(opts)
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := envoyconfig.Setup(mgr, envoyconfig.Options{}); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if mf.EnableWebhook {
		if err := webhooks.SetupEnvoyConfigWebhooks(mgr); err != nil {
			log.Error(err, "setting up the webhook")
			os.Exit(1)
		}
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
