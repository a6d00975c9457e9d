package webhookcert_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/testenv"
	"github.com/portico-dev/portico/internal/webhookcert"
	"github.com/portico-dev/portico/webhooks"
)

const (
	ns     = "portico-system"
	secret = "portico-lbipam-webhook-cert"
	vwc    = "portico-lbipam"
	path   = "/validate-portico-dev-v1alpha1-loadbalancerippool"
)

// TestRotation: the controller creates its own CA and serving certificate, patches the
// CA into its webhook configuration, and the apiserver's calls keep being answered
// while the serving certificate is renewed every second and when the CA is replaced.
func TestRotation(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	start := time.Now()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	k := env.Client
	port := freePort(t)
	must(t, k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	// As the chart installs them: an empty Secret and a configuration without a CA.
	must(t, k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secret}}))
	url := fmt.Sprintf("https://localhost:%s%s", port, path)
	must(t, k.Create(ctx, &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: vwc},
		Webhooks: []admissionv1.ValidatingWebhook{{Name: "vloadbalancerippool.portico.dev", AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{URL: &url}, SideEffects: ptr.To(admissionv1.SideEffectClassNone),
			FailurePolicy: ptr.To(admissionv1.Fail),
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule: admissionv1.Rule{APIGroups: []string{"portico.dev"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"loadbalancerippools"}}}}}}}))

	// The lookahead exceeds the serving certificate's lifetime, so every check renews it.
	certs, err := webhookcert.New(webhookcert.Options{Namespace: ns, SecretName: secret, WebhookConfiguration: vwc,
		DNSNames: []string{"portico-lbipam-webhook.portico-system.svc", "localhost"}, CertDir: t.TempDir(),
		ServerCertDuration: time.Hour, Lookahead: 2 * time.Hour, CheckFrequency: time.Second})
	must(t, err)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller:    config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{Port: atoi(port), TLSOpts: []func(*tls.Config){certs.TLSConfig}})})
	must(t, err)
	must(t, webhooks.SetupIPPoolWebhook(mgr))
	must(t, certs.AddTo(mgr))
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The CA is created, injected, and the webhook answers over it.
	waitFor(t, 60*time.Second, "the webhook to answer over its own CA", func() error {
		if err := certs.Ready(nil); err != nil {
			return err
		}
		return probe(ctx, k)
	})
	t.Logf("answering over its own CA %v after the control plane started", time.Since(start).Round(time.Second))
	ca := secretCA(t, k)
	if got := injectedCA(t, k); !bytes.Equal(got, ca) {
		t.Fatalf("the webhook configuration's CA is not the Secret's")
	}
	checkServed(t, port, ca)

	// The serving certificate is renewed every second: no call may fail meanwhile.
	first := certs.Loaded()
	calls, failures := 0, []error{}
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); calls++ {
		if err := probe(ctx, k); err != nil {
			failures = append(failures, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rotations := certs.Loaded() - first; rotations < 3 {
		t.Fatalf("%d serving certificates in 6 s; the rotation did not happen", rotations)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d calls failed while the serving certificate rotated, e.g. %v", len(failures), calls, failures[0])
	}
	if !bytes.Equal(secretCA(t, k), ca) {
		t.Fatal("the CA changed although it was valid")
	}
	t.Logf("%d calls answered across %d serving certificates", calls, certs.Loaded()-first)

	// A new CA (the Secret lost its contents, as when a user deletes its data): it is
	// reissued, injected, and calls are answered again.
	// The rotation above rewrites the Secret every second: the edit retries on conflict, as kubectl edit would be retried.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: secret}, s); err != nil {
			return err
		}
		s.Data = nil
		return k.Update(ctx, s)
	}))
	waitFor(t, 60*time.Second, "a new CA, injected and answered over", func() error {
		now := secretCA(t, k)
		if len(now) == 0 || bytes.Equal(now, ca) {
			return fmt.Errorf("no new CA yet")
		}
		if !bytes.Equal(injectedCA(t, k), now) {
			return fmt.Errorf("the new CA is not injected yet")
		}
		return probe(ctx, k)
	})
	checkServed(t, port, secretCA(t, k))
	t.Logf("answering over a new CA at %v", time.Since(start).Round(time.Second))
}

// probe creates (dry run) a pool only the webhook refuses, and checks that the refusal
// is the webhook's: an unreachable webhook fails the call differently.
func probe(ctx context.Context, k client.Client) error {
	p := &v1alpha1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "backwards"},
		Spec: v1alpha1.LoadBalancerIPPoolSpec{Blocks: []v1alpha1.IPBlock{{Start: "10.0.0.9", Stop: "10.0.0.1"}}}}
	err := k.Create(ctx, p, client.DryRunAll)
	switch {
	case err == nil:
		return fmt.Errorf("a backwards pool was admitted: the webhook did not run")
	case strings.Contains(err.Error(), "denied the request") && strings.Contains(err.Error(), "spec.blocks[0]"):
		return nil
	default:
		return err
	}
}

func secretCA(t *testing.T, k client.Client) []byte {
	t.Helper()
	s := &corev1.Secret{}
	must(t, k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secret}, s))
	return s.Data["ca.crt"]
}

func injectedCA(t *testing.T, k client.Client) []byte {
	t.Helper()
	w := &admissionv1.ValidatingWebhookConfiguration{}
	must(t, k.Get(context.Background(), client.ObjectKey{Name: vwc}, w))
	return w.Webhooks[0].ClientConfig.CABundle
}

// checkServed dials the webhook as the apiserver does and verifies its certificate
// against ca for the name localhost.
func checkServed(t *testing.T, port string, ca []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("the Secret's ca.crt does not parse")
	}
	conn, err := tls.Dial("tcp", net.JoinHostPort("localhost", port), &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("the served certificate does not verify against the CA: %v", err)
	}
	_ = conn.Close()
}

func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("waiting for %s: %v", what, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
