// Package e2e holds the scenarios of shared/scenarios.md (S1–S8, as far as they exist
// in code) and the faults a cluster meets, as Ginkgo specs labelled by scenario
// (`--ginkgo.label-filter=S3`, `faults`). They run on a framework.Cluster: by default
// the local provider (root: a control plane with the chart installed, the binaries
// under their own ServiceAccounts, three node namespaces with agents, a client on
// their bridge, kwok), or with PORTICO_E2E_KUBECONFIG (or PORTICO_E2E_PROVIDER=kubeconfig
// and KUBECONFIG) a real cluster where the chart is installed. Each spec asserts what a
// user sees (objects and conditions as kubectl shows them) and what the network sees
// (ARP from the client, TCP and HTTP through the redirect, the xDS each node serves).
package e2e

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portico-dev/portico/e2e/framework"
	"github.com/portico-dev/portico/e2e/framework/local"
	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/internal/standin"
)

// cluster is where the specs run.
var cluster framework.Cluster

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	RunSpecs(t, "Portico end to end")
}

// kubeconfigPath is the real cluster to run on, or "" for the local one.
func kubeconfigPath() string {
	if p := os.Getenv("PORTICO_E2E_KUBECONFIG"); p != "" {
		return p
	}
	if os.Getenv("PORTICO_E2E_PROVIDER") == "kubeconfig" {
		return os.Getenv("KUBECONFIG")
	}
	return ""
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(logr.Discard())
	if p := kubeconfigPath(); p != "" {
		kc, err := framework.Kubeconfig(p)
		Expect(err).NotTo(HaveOccurred())
		cluster = kc
		return
	}
	privileged.Require(GinkgoTB())
	// A segment of its own: `make demo ARGS=--wait` (192.168.10.0/24) may be running.
	c := local.Start(GinkgoTB(), local.Options{Kwok: true, Router: standin.Oracle, Progress: GinkgoWriter,
		V4: netip.MustParsePrefix("10.250.0.0/24"), V6: netip.MustParsePrefix("fd00:250::/64"),
		PoolFirst: netip.MustParseAddr("10.250.0.211"), PoolLast: netip.MustParseAddr("10.250.0.215")})
	Expect(c.WaitReady(ctx, 2*time.Minute)).To(Succeed())
	cluster = c
	// Generous: it builds every binary (a cold cache on two cores takes minutes; hack/test.sh
	// warms it first) and starts a control plane, three nodes and the chart's controllers.
}, NodeTimeout(12*time.Minute))

// On failure: what each node was asked and did, conditions, Events, logs.
var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() && cluster != nil {
		framework.Dump(context.Background(), cluster, GinkgoWriter)
	}
})
