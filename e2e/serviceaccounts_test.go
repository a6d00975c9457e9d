package e2e

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/portico-dev/portico/e2e/framework/local"
	"github.com/portico-dev/portico/internal/apirecorder"
	"github.com/portico-dev/portico/internal/testproc"
)

// describeServiceAccounts checks what the scenarios did on the wire, in the local
// cluster where every binary talks through a recording proxy with only a token of its
// own chart ServiceAccount: a right the chart forgot shows up as a refused request
// rather than passing silently under an admin kubeconfig, and what RBAC cannot
// express (metadata-only Secret reads, Secrets read by name) is checked here.
func describeServiceAccounts() {
	Describe("every binary under its own ServiceAccount", Label("rbac"), func() {
		It("was refused nothing, stayed up, and read Secrets only as its role's limits say", func(ctx SpecContext) {
			lc, ok := cluster.(*local.Cluster)
			if !ok {
				Skip("the recording proxies exist in the local cluster only")
			}
			ensureS4(ctx)
			for name, p := range lc.Procs() {
				Expect(p.Exited()).To(BeFalse(), "%s exited:\n%s", name, testproc.Tail(p.Logs.String(), 40))
			}
			for name, p := range lc.Recorders {
				Expect(p.Exchanges(apirecorder.Forbidden)).To(BeEmpty(), "requests of %s refused", name)
				Expect(p.Exchanges(func(apirecorder.Exchange) bool { return true })).NotTo(BeEmpty(), "%s sent no request through its proxy", name)
			}
			// The Secrets in the install namespace (the webhook certificates) are enough
			// for the ingress controller's watch to have carried some, as metadata.
			ing := lc.Recorders["ingress"]
			Expect(ing.Exchanges(apirecorder.Secrets)).NotTo(BeEmpty())
			Expect(ing.MetaSecrets.Load()).To(BeNumerically(">", 0), "the metadata-only check saw nothing")
			Expect(lc.Recorders["lbipam"].FullSecrets.Load()).To(BeNumerically(">", 0),
				"no whole Secret seen even in LB-IPAM's certificate reads: the Secret scanner is blind")
			Expect(ing.FullSecrets.Load()).To(BeZero(), "the ingress controller received whole Secrets")
			// An agent reads only the Secrets it serves, each by name (a per-name watch).
			// (Eventually: run alone, the spec may get here before the agents got S4's config.)
			for _, node := range cluster.Nodes() {
				Eventually(func() []apirecorder.Exchange { return lc.Recorders["agent-"+node].Exchanges(apirecorder.Secrets) }).
					ShouldNot(BeEmpty(), "agent %s never read the TLS Secret it serves", node)
				for _, e := range lc.Recorders["agent-"+node].Exchanges(apirecorder.Secrets) {
					Expect(byName(e)).To(BeTrue(), "agent %s read Secrets other than by name: %v", node, e)
				}
			}
		})
	})
}

// byName: a request for one Secret, by its path or a metadata.name field selector.
func byName(e apirecorder.Exchange) bool {
	if strings.Contains(e.Query, "fieldSelector=metadata.name%3D") {
		return true
	}
	i := strings.Index(e.Path, "/secrets/")
	return i >= 0 && len(e.Path) > i+len("/secrets/")
}
