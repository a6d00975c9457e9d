package agent

import "regexp"

// DefaultInterfaceReportExclude matches the interfaces CNIs and tunnels create per pod
// or per overlay (Cilium lxc*, Calico cali*, bridge CNIs' veth*, flannel, VXLAN/Geneve,
// IPIP, kube-proxy's IPVS dummy). Such names come and go with every pod, and each change
// of the reported list is a NodeProxy write and a full L2 reassignment in the
// controller, for interfaces no L2 policy announces on.
const DefaultInterfaceReportExclude = `^(lxc|cali|veth|cilium_|flannel|cni|vxlan|genev|tunl|kube-ipvs|nodelocaldns|docker)`

// reportedInterfaces are the interfaces published in NodeProxy status.interfaces, the
// list the L2 controller matches policies' interface regexes against: names, minus
// those exclude matches. The responder itself still answers on every interface that
// matches an announcement; only what the node advertises as eligible is filtered.
func reportedInterfaces(names []string, exclude *regexp.Regexp) []string {
	if exclude == nil {
		return names
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !exclude.MatchString(n) {
			out = append(out, n)
		}
	}
	return out
}
