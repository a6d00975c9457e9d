// Package e2e holds the scenarios of shared/scenarios.md as Ginkgo specs. By default they
// run against a local control plane (real kube-apiserver and etcd) with the controllers
// started in this process; with PORTICO_E2E_KUBECONFIG set they run against that cluster,
// where Portico must already be installed.
package e2e

import (
	"context"
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/controllers/lbipam"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/internal/testenv"
)

var (
	k8s     client.Client
	kubectl func(args ...string) (string, error)
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Portico scenarios")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	if kc := os.Getenv("PORTICO_E2E_KUBECONFIG"); kc != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		Expect(err).NotTo(HaveOccurred())
		k8s, err = client.New(cfg, client.Options{Scheme: scheme.New()})
		Expect(err).NotTo(HaveOccurred())
		kubectl = func(args ...string) (string, error) {
			return (&testenv.Env{Kubeconfig: kc}).Kubectl(context.Background(), args...)
		}
		return
	}
	env, err := testenv.Start(testenv.Options{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
	k8s = env.Client
	kubectl = func(args ...string) (string, error) { return env.Kubectl(context.Background(), args...) }

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	Expect(lbipam.Setup(mgr, lbipam.Options{})).To(Succeed())
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	DeferCleanup(func() { cancel(); <-done })
})
