package inspect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/verdict"
)

// Inputs is what the plugin read for one source object.
type Inputs struct {
	Source Object
	// Configs are the NodeProxyConfigs made from the source (its chain).
	Configs []v1alpha1.NodeProxyConfig
	// LoadBalancers are the Services whose addresses reach the source.
	LoadBalancers []corev1.Service
	// PublishesAddress: the source kind shows its address (an Ingress); Published
	// is what it shows.
	PublishesAddress bool
	Published        []string
	// Announcers are the L2 controller's NodeProxyConfigs (producer l2): which
	// node answers ARP/NDP for which address.
	Announcers []v1alpha1.NodeProxyConfig
	Nodes      []NodeInfo
	// Problems the reader found on the way (e.g. the source is not Portico's).
	Problems []string
}

// BuildStatus follows the chain of in.Source and lists what is wrong.
func BuildStatus(in Inputs) Status {
	all := slices.Clone(in.Configs)
	for _, a := range in.Announcers {
		if !slices.ContainsFunc(all, func(c v1alpha1.NodeProxyConfig) bool { return c.Name == a.Name }) {
			all = append(all, a)
		}
	}
	verdicts := judge(all, in.Nodes)

	st := Status{Source: in.Source, Configs: []Config{}, Addresses: []Address{}, Problems: slices.Clone(in.Problems)}
	if in.PublishesAddress {
		st.Published = append([]string{}, in.Published...)
	}
	configs := slices.Clone(in.Configs)
	slices.SortFunc(configs, func(a, b v1alpha1.NodeProxyConfig) int { return cmp.Compare(a.Name, b.Name) })
	for i := range configs {
		c := configConfig(&configs[i], verdicts[configs[i].Name])
		st.Configs = append(st.Configs, c)
		st.Problems = append(st.Problems, configProblems(c)...)
	}

	lbs := slices.Clone(in.LoadBalancers)
	slices.SortFunc(lbs, func(a, b corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for i := range lbs {
		svc := &lbs[i]
		ref := Object{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name}
		st.LoadBalancers = append(st.LoadBalancers, ref)
		ips := serviceIPs(svc)
		if len(ips) == 0 {
			st.Problems = append(st.Problems, fmt.Sprintf("%s has no address%s", ref, conditionNote(serviceCondition(svc, v1alpha1.ConditionIPAMRequestSatisfied), v1alpha1.ConditionIPAMRequestSatisfied)))
		}
		for _, ip := range ips {
			a, problems := address(ip, ref, svc, in.Announcers, verdicts)
			st.Addresses = append(st.Addresses, a)
			st.Problems = append(st.Problems, problems...)
		}
	}
	if in.PublishesAddress && len(in.Published) == 0 {
		field := "status.loadBalancer"
		if in.Source.Kind == "Gateway" {
			field = "status.addresses"
		}
		st.Problems = append(st.Problems, fmt.Sprintf("%s shows no address in %s yet (its controller publishes it once a node serves it)", in.Source, field))
	}
	st.OK = len(st.Problems) == 0
	return st
}

func configConfig(c *v1alpha1.NodeProxyConfig, v verdict.Verdict) Config {
	out := Config{
		Name:          c.Name,
		Producer:      c.Labels[v1alpha1.LabelProducer],
		Generation:    c.Generation,
		Programmed:    condition(c.Status.Conditions, v1alpha1.ConditionProgrammed, c.Generation),
		SelectedNodes: v.Selected,
		Nodes:         nodeStates(v),
	}
	for _, r := range c.Spec.Redirects {
		out.Redirects = append(out.Redirects, Redirect{Name: r.Name, VIP: r.VIP, Port: r.Port, Protocol: string(cmp.Or(r.Protocol, v1alpha1.ProtocolTCP)), Listener: r.Listener})
	}
	for _, a := range c.Spec.Announcements {
		out.Announcements = append(out.Announcements, Announcement{IP: a.IP, Service: a.Service.Namespace + "/" + a.Service.Name, Interfaces: a.Interfaces})
	}
	return out
}

func configProblems(c Config) []string {
	if c.SelectedNodes == 0 {
		return []string{c.Name + ": no node running the agent matches spec.nodeSelector"}
	}
	var out []string
	for _, n := range c.Nodes {
		switch n.State {
		case StateRejected:
			out = append(out, fmt.Sprintf("%s: rejected by %s (%s: %s)", c.Name, n.Node, n.Reason, n.Message))
		case StatePending:
			out = append(out, fmt.Sprintf("%s: pending on %s (%s: %s)", c.Name, n.Node, n.Reason, n.Message))
		}
	}
	return out
}

// serviceIPs are the addresses LB-IPAM gave the Service (hostnames are not
// Portico's and nothing answers ARP for them).
func serviceIPs(svc *corev1.Service) []string {
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out
}

// address finds the node answering for ip: the l2 configs announcing it. The
// config selects its one node (a CRD rule), which verdict names.
func address(ip string, ref Object, svc *corev1.Service, announcers []v1alpha1.NodeProxyConfig, verdicts map[string]verdict.Verdict) (Address, []string) {
	a := Address{IP: ip, Service: ref, L2Announced: serviceCondition(svc, v1alpha1.ConditionL2Announced)}
	var found []string
	for i := range announcers {
		c := &announcers[i]
		if slices.ContainsFunc(c.Spec.Announcements, func(an v1alpha1.Announcement) bool { return an.IP == ip }) {
			found = append(found, c.Name)
		}
	}
	slices.Sort(found)
	switch len(found) {
	case 0:
		return a, []string{fmt.Sprintf("no node answers ARP/NDP for %s (%s)%s", ip, ref, conditionNote(a.L2Announced, v1alpha1.ConditionL2Announced))}
	case 1:
	default:
		return a, []string{fmt.Sprintf("%s is announced by %d configs (%s): more than one node may answer for it", ip, len(found), strings.Join(found, ", "))}
	}
	a.Config = found[0]
	states := nodeStates(verdicts[a.Config])
	if len(states) == 0 {
		return a, []string{fmt.Sprintf("%s is assigned by %s to a node that runs no agent", ip, a.Config)}
	}
	a.AnnouncedBy, a.State = states[0].Node, states[0].State
	if a.State != StateProgrammed {
		return a, []string{fmt.Sprintf("%s is announced by %s, but %s is %s there (%s: %s)", ip, a.AnnouncedBy, a.Config, a.State, states[0].Reason, states[0].Message)}
	}
	return a, nil
}

// conditionNote explains a missing address or announcement with the condition
// of the controller responsible, or says that there is none.
func conditionNote(c *Condition, t v1alpha1.ConditionType) string {
	if c == nil {
		switch t {
		case v1alpha1.ConditionL2Announced:
			return ": the Service has no L2Announced condition; no L2AnnouncementPolicy selects it, or the L2 controller is not running"
		default:
			return fmt.Sprintf(": the Service has no %s condition; is its controller running?", t)
		}
	}
	return fmt.Sprintf(": %s=%s %s: %s", t, c.Status, c.Reason, c.Message)
}
