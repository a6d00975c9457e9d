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

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/internal/managerflags"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	var (
		opts l2.Options
	)
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = l2.DefaultNamespace
	}
	flag.StringVar(&opts.Namespace, "namespace", defaultNS, "install namespace holding the agents' heartbeat Leases (default: $POD_NAMESPACE or portico-system)")
	// Writes happen only when an assignment changes, but a node failure moves its whole
	// share at once: one NodeProxyConfig per node, plus one condition per moved Service.
	mf := managerflags.Register(flag.CommandLine, managerflags.Options{
		LeaderElectionID: "portico-l2", Webhook: "L2AnnouncementPolicy", QPS: 200, Burst: 400})
	flag.Parse()
	mf.SetupLogger()
	log := ctrl.Log.WithName("l2-controller")

	mgr, err := mf.Manager(ctrl.Options{
		// Only the heartbeat Leases of the install namespace are watched: every kubelet
		// renews a node Lease in kube-node-lease, which this controller has no use for.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
			// Of the agents' NodeProxies only the reported interfaces matter here.
			&v1alpha1.NodeProxy{}: {Transform: l2.TrimNodeProxy},
		}},
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	if err := l2.Setup(mgr, opts); err != nil {
		log.Error(err, "setting up the controller")
		os.Exit(1)
	}
	if mf.EnableWebhook {
		if err := webhooks.SetupL2PolicyWebhook(mgr); err != nil {
			log.Error(err, "setting up the webhook")
			os.Exit(1)
		}
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
