// Command l2-controller assigns each Service address selected by an L2AnnouncementPolicy
// to one node whose agent is live (in the agents' memberlist cluster, which it joins),
// and serves the policies' validating webhook.
package main

import (
	"flag"
	"os"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/controllers/l2"
	"github.com/portico-dev/portico/internal/l2member"
	"github.com/portico-dev/portico/internal/managerflags"
	"github.com/portico-dev/portico/webhooks"
)

func main() {
	var (
		opts                                   l2.Options
		mlBind, mlAdvertise, mlJoin, mlKeyFile string
		ml                                     l2.MemberlistOptions
	)
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = l2.DefaultNamespace
	}
	flag.StringVar(&opts.Namespace, "namespace", defaultNS, "install namespace holding the agents' heartbeat Leases (default: $POD_NAMESPACE or portico-system)")
	// Node liveness comes from the agents' memberlist cluster, which this controller
	// joins as a non-announcing member (see docs/architecture.md, L2 announcements).
	flag.StringVar(&mlBind, "memberlist-bind-address", envOr("PORTICO_MEMBERLIST_BIND_ADDRESS", ":7946"), "host:port to join the agents' memberlist cluster on (UDP and TCP); empty takes node liveness from the agents' heartbeat Leases instead (failover in tens of seconds)")
	flag.StringVar(&mlAdvertise, "memberlist-advertise-address", os.Getenv("PORTICO_MEMBERLIST_ADVERTISE_ADDRESS"), "host:port the agents reach this controller at (default: derived from the bind address, e.g. the pod IP)")
	flag.StringVar(&mlJoin, "memberlist-join", os.Getenv("PORTICO_MEMBERLIST_JOIN"), "comma-separated extra seeds; the agents' heartbeat Leases publish their addresses")
	flag.StringVar(&mlKeyFile, "memberlist-secret-key-file", os.Getenv("PORTICO_MEMBERLIST_SECRET_KEY_FILE"), "key encrypting memberlist traffic (16, 24 or 32 bytes, raw or base64); the same as the agents'")
	flag.StringVar(&ml.Name, "memberlist-name", envOr("POD_NAME", hostname()), "member name, unique in the cluster (default: $POD_NAME)")
	// Writes happen only when an assignment changes, but a node failure moves its whole
	// share at once: one NodeProxyConfig per node, plus one condition per moved Service.
	mf := managerflags.Register(flag.CommandLine, managerflags.Options{
		LeaderElectionID: "portico-l2", Webhook: "L2AnnouncementPolicy", QPS: 200, Burst: 400})
	flag.Parse()
	mf.SetupLogger()
	log := ctrl.Log.WithName("l2-controller")
	if mlBind != "" {
		key, err := l2member.ReadKey(mlKeyFile)
		if err != nil {
			log.Error(err, "invalid --memberlist-secret-key-file")
			os.Exit(1)
		}
		ml.Bind, ml.Advertise, ml.SecretKey = mlBind, mlAdvertise, key
		for _, j := range strings.Split(mlJoin, ",") {
			if j = strings.TrimSpace(j); j != "" {
				ml.Join = append(ml.Join, j)
			}
		}
		opts.Memberlist = &ml
	}

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

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func hostname() string {
	h, _ := os.Hostname()
	return "l2-controller-" + h
}
