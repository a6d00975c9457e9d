// Package managerflags holds what every Portico controller binary shares: the flags for
// leader election, metrics, probes, the webhook server, client rate limits and logging,
// and the manager built from them. Each main adds only the flags that are its own.
package managerflags

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/internal/webhookcert"
)

// Flags are the shared settings of one binary.
type Flags struct {
	leaderID       string
	leaderElect    bool
	leaderNS       string
	metricsAddr    string
	probeAddr      string
	pprofAddr      string
	webhookPort    int
	webhookCertDir string
	// webhookCert* configure self-rotated certificates (internal/webhookcert).
	webhookCertSecret    string
	webhookCertNS        string
	webhookConfiguration string
	webhookService       string
	webhookExtraDNS      string
	// EnableWebhook is false when the binary serves no webhook or the user turned it off.
	EnableWebhook bool
	qps           float64
	burst         int
	zap           zap.Options
}

// Options say what a binary needs registered.
type Options struct {
	// LeaderElectionID names the leader election Lease (e.g. "portico-lbipam").
	LeaderElectionID string
	// Webhook, if not empty, registers --enable-webhook for the webhook of this kind.
	Webhook string
	// QPS and Burst are the defaults of --kube-api-qps and --kube-api-burst. Controllers
	// write about once per object they manage; controller-runtime's default of 20 QPS
	// would throttle a resync of thousands of objects for minutes.
	QPS   float64
	Burst int
}

// Register adds the shared flags to fs.
func Register(fs *flag.FlagSet, o Options) *Flags {
	f := &Flags{leaderID: o.LeaderElectionID}
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "elect a leader, so that two replicas can run")
	fs.StringVar(&f.leaderNS, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's)")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "", "address of Go's /debug/pprof endpoints, e.g. 127.0.0.1:6060 (empty: off); for finding where a controller's memory or CPU goes")
	if o.Webhook != "" {
		fs.BoolVar(&f.EnableWebhook, "enable-webhook", true, "serve the "+o.Webhook+" validating webhook")
		fs.IntVar(&f.webhookPort, "webhook-port", 9443, "port of the webhook server")
		fs.StringVar(&f.webhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"), "directory with tls.crt and tls.key for the webhook server (written by the controller with --webhook-cert-secret)")
		fs.StringVar(&f.webhookCertSecret, "webhook-cert-secret", "", "Secret in --webhook-cert-namespace where the controller keeps a self-signed CA and serving certificate, rotated before expiry; empty: tls.crt and tls.key are provided in --webhook-cert-dir (e.g. by cert-manager)")
		fs.StringVar(&f.webhookCertNS, "webhook-cert-namespace", os.Getenv("POD_NAMESPACE"), "namespace of --webhook-cert-secret and the webhook Service (default: $POD_NAMESPACE)")
		fs.StringVar(&f.webhookConfiguration, "webhook-configuration", "", "ValidatingWebhookConfiguration the self-signed CA is patched into (with --webhook-cert-secret)")
		fs.StringVar(&f.webhookExtraDNS, "webhook-cert-extra-dns-names", "", "comma-separated DNS names the certificate also carries (with --webhook-cert-secret), for an apiserver that reaches the webhook by URL")
		fs.StringVar(&f.webhookService, "webhook-service", "", "Service the apiserver reaches the webhook through; its DNS names go into the certificate (with --webhook-cert-secret)")
	}
	fs.Float64Var(&f.qps, "kube-api-qps", o.QPS, "queries per second to the apiserver")
	fs.IntVar(&f.burst, "kube-api-burst", o.Burst, "burst of queries to the apiserver")
	f.zap.BindFlags(fs)
	return f
}

func (f *Flags) dnsNames(svc, ns string) []string {
	names := []string{svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}
	for _, n := range strings.Split(f.webhookExtraDNS, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// SetupLogger installs the logger configured by the flags; call it after parsing.
func (f *Flags) SetupLogger() { ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap))) }

// Manager builds the binary's manager from the flags. opts may carry what is specific
// to the binary (e.g. cache options); the shared fields are set here.
func (f *Flags) Manager(opts ctrl.Options) (ctrl.Manager, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(f.qps), f.burst
	if opts.Scheme == nil {
		opts.Scheme = scheme.New()
	}
	if opts.Cache.DefaultTransform == nil {
		// No Portico binary reads managedFields, a large share of every cached
		// object; the gateway-controller's caches hold every route, Service and
		// NodeProxyConfig.
		opts.Cache.DefaultTransform = cache.TransformStripManagedFields()
	}
	opts.Metrics = metricsserver.Options{BindAddress: f.metricsAddr}
	opts.HealthProbeBindAddress = f.probeAddr
	opts.PprofBindAddress = f.pprofAddr
	opts.LeaderElection, opts.LeaderElectionID, opts.LeaderElectionNamespace = f.leaderElect, f.leaderID, f.leaderNS
	var certs *webhookcert.Server
	if f.EnableWebhook {
		wo := webhook.Options{Port: f.webhookPort, CertDir: f.webhookCertDir}
		if f.webhookCertSecret != "" {
			if f.webhookCertNS == "" || f.webhookService == "" || f.webhookConfiguration == "" {
				return nil, errors.New("--webhook-cert-secret needs --webhook-cert-namespace (or $POD_NAMESPACE), --webhook-service and --webhook-configuration")
			}
			svc, ns := f.webhookService, f.webhookCertNS
			if certs, err = webhookcert.New(webhookcert.Options{Namespace: ns, SecretName: f.webhookCertSecret,
				WebhookConfiguration: f.webhookConfiguration, CertDir: f.webhookCertDir,
				DNSNames: f.dnsNames(svc, ns)}); err != nil {
				return nil, err
			}
			wo.TLSOpts = append(wo.TLSOpts, certs.TLSConfig)
		}
		opts.WebhookServer = webhook.NewServer(wo)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if certs != nil {
		if err := certs.AddTo(mgr); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("webhook-certificate", certs.Ready); err != nil {
			return nil, err
		}
	}
	return mgr, mgr.AddReadyzCheck("readyz", healthz.Ping)
}
