package agent

import (
	"github.com/portico-dev/portico/apis/v1alpha1"
)

// ReasonProducerNotAllowed rejects a config that carries what its producer may not ask
// for. The chart's admission policy refuses such configs already; the agent checks again
// because it acts on whatever reaches it (the policy may be off, or the config older).
const ReasonProducerNotAllowed v1alpha1.ConditionReason = "ProducerNotAllowed"

// producerProblem says why c may not be applied, or "": ARP/NDP answers make a node
// claim an address on the network, so only the L2 producer, which assigns each address
// to one node, may ask for them; and the L2 producer asks for nothing else.
func producerProblem(c *v1alpha1.NodeProxyConfig) string {
	s := &c.Spec
	if c.Labels[v1alpha1.LabelProducer] == v1alpha1.ProducerL2 {
		if len(s.Redirects) > 0 || s.Envoy != nil || len(s.RouteFragments) > 0 || len(s.FilterChainFragments) > 0 {
			return "spec: a config of the " + v1alpha1.ProducerL2 + " producer may carry announcements only"
		}
		return ""
	}
	if len(s.Announcements) > 0 {
		return "spec.announcements: only configs of the " + v1alpha1.ProducerL2 + " producer (label " +
			v1alpha1.LabelProducer + "=" + v1alpha1.ProducerL2 + ") may announce addresses"
	}
	return ""
}
