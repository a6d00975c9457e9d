// Package webhookcert gives a controller's webhook server its certificate where no
// cert-manager does: github.com/open-policy-agent/cert-controller (as MetalLB uses it)
// keeps a self-signed CA and a serving certificate in a Secret of the install namespace,
// renews them before they expire and patches the CA into the controller's
// ValidatingWebhookConfiguration. This package serves whatever that Secret holds.
//
// Why not mount the Secret as a volume: the kubelet refreshes Secret volumes only every
// minute or so, which would leave a new install (and every CA rotation) with a webhook
// the apiserver cannot verify for that long. The controller watches its one Secret and
// swaps the certificate it serves as soon as the Secret changes; the files it also writes
// exist because cert-controller waits for them before it declares itself ready.
package webhookcert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// What cert-controller needs: the Secret it fills (in the install namespace; the chart
// binds it there and narrows update to the controller's own Secret by name), and the
// webhook configuration it patches the CA into (update narrowed by name likewise).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch;update,namespace=portico-system
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=list;watch;update

// Options name what one controller's certificate belongs to.
type Options struct {
	// Namespace and SecretName: the Secret holding CA and serving certificate. It must
	// exist (the chart creates it empty), since the controller may not create Secrets.
	Namespace, SecretName string
	// WebhookConfiguration is the ValidatingWebhookConfiguration the CA goes into.
	WebhookConfiguration string
	// DNSNames are the names the apiserver dials (<service>.<namespace>.svc).
	DNSNames []string
	// CertDir receives tls.crt and tls.key.
	CertDir string
	// ServerCertDuration, CADuration, Lookahead and CheckFrequency default to
	// cert-controller's (1 year, 10 years, 90 days, 12 hours); tests shorten them.
	ServerCertDuration, CADuration, Lookahead, CheckFrequency time.Duration
}

// Server is the certificate source of one webhook server.
type Server struct {
	opts  Options
	ready chan struct{}
	cert  atomic.Pointer[tls.Certificate]
	// serial of the certificate served, for tests and logs.
	serials atomic.Int64
}

// New checks o. Pass s.TLSConfig to the webhook server's TLSOpts, then AddTo the
// manager, and add s.Ready as a readiness check.
func New(o Options) (*Server, error) {
	if o.Namespace == "" || o.SecretName == "" || o.WebhookConfiguration == "" || len(o.DNSNames) == 0 || o.CertDir == "" {
		return nil, errors.New("webhookcert: namespace, secret, webhook configuration, DNS names and certificate directory are required")
	}
	if err := os.MkdirAll(o.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("webhookcert: %w", err)
	}
	return &Server{opts: o, ready: make(chan struct{})}, nil
}

// AddTo adds the rotator and the Secret watch to mgr.
func (s *Server) AddTo(mgr ctrl.Manager) error {
	o := s.opts
	r := &rotator.CertRotator{
		SecretKey:              types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
		CertDir:                o.CertDir,
		CAName:                 "portico-webhook-ca",
		CAOrganization:         "portico",
		DNSName:                o.DNSNames[0],
		ExtraDNSNames:          o.DNSNames[1:],
		IsReady:                s.ready,
		Webhooks:               []rotator.WebhookInfo{{Name: o.WebhookConfiguration, Type: rotator.Validating}},
		ServerCertDuration:     o.ServerCertDuration,
		CaCertDuration:         o.CADuration,
		LookaheadInterval:      o.Lookahead,
		RotationCheckFrequency: o.CheckFrequency,
		// Every replica serves the webhook, so every replica keeps its certificate current.
		RequireLeaderElection: false,
		ControllerName:        "webhook-cert-" + o.SecretName,
	}
	if err := rotator.AddRotator(mgr, r); err != nil {
		return fmt.Errorf("webhookcert: %w", err)
	}
	// A cache of just this Secret: the manager's cache would watch every Secret the
	// controller's RBAC lets it see.
	c, err := cache.New(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {
			Field: fields.OneTermEqualSelector("metadata.name", o.SecretName)}}})
	if err != nil {
		return fmt.Errorf("webhookcert: %w", err)
	}
	if err := mgr.Add(nonLeader{c}); err != nil {
		return err
	}
	return mgr.Add(nonLeader{manager.RunnableFunc(func(ctx context.Context) error { return s.follow(ctx, c) })})
}

// nonLeader runs on every replica, leader or not.
type nonLeader struct{ manager.Runnable }

func (nonLeader) NeedLeaderElection() bool { return false }

// follow serves the Secret's certificate from the moment it holds one, and each new one.
func (s *Server) follow(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	kick := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(handlerFuncs(kick)); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		sec := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: s.opts.Namespace, Name: s.opts.SecretName}, sec); err != nil {
			continue
		}
		if err := s.load(sec); err != nil {
			ctrl.Log.WithName("webhookcert").V(1).Info("secret holds no usable certificate yet", "secret", s.opts.SecretName, "reason", err.Error())
		}
	}
}

func (s *Server) load(sec *corev1.Secret) error {
	crt, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return err
	}
	if cur := s.cert.Load(); cur != nil && len(cur.Certificate) > 0 && string(cur.Certificate[0]) == string(pair.Certificate[0]) {
		return nil
	}
	for name, data := range map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key} {
		if err := writeAtomic(filepath.Join(s.opts.CertDir, name), data); err != nil {
			return err
		}
	}
	s.cert.Store(&pair)
	s.serials.Add(1)
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// TLSConfig makes the webhook server present the current certificate; until the first
// one is issued, handshakes fail (and the readiness check reports why).
func (s *Server) TLSConfig(c *tls.Config) {
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if cert := s.cert.Load(); cert != nil {
			return cert, nil
		}
		return nil, errors.New("webhook certificate not issued yet")
	}
}

// Ready is a readiness check: ready once the certificate is served and its CA is in
// the webhook configuration.
func (s *Server) Ready(*http.Request) error {
	select {
	case <-s.ready:
		if s.cert.Load() == nil {
			return errors.New("webhook certificate not loaded yet")
		}
		return nil
	default:
		return errors.New("webhook certificate not issued or its CA not injected yet")
	}
}

// Loaded counts the certificates served so far (1 after the first, +1 per rotation).
func (s *Server) Loaded() int64 { return s.serials.Load() }

func handlerFuncs(fn func(any)) toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    fn,
		UpdateFunc: func(_, n any) { fn(n) },
		DeleteFunc: fn,
	}
}
