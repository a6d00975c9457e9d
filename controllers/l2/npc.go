package l2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2assign"
	"github.com/portico-dev/portico/internal/npcwriter"
)

// AnnotationNode named the node an l2 NodeProxyConfig is for before the writer's
// portico.dev/source annotation did; still read when adopting configs written then.
const AnnotationNode = "l2.portico.dev/node"

// NPCName is the NodeProxyConfig of the node's announcements: "l2-<node>". No other
// producer uses the "l2-" prefix, and node names are unique, so it cannot collide. A
// node name too long for the prefix is cut and given a hash suffix.
func NPCName(node string) string {
	name := "l2-" + node
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(node))
	return name[:validation.DNS1123SubdomainMaxLength-11] + "-" + hex.EncodeToString(sum[:5])
}

// hostnameOf is the value of the node's kubernetes.io/hostname label, which the agent's
// node matches; it differs from the node name on some platforms.
func hostnameOf(n l2assign.Node) string {
	if h := n.Labels[corev1.LabelHostname]; h != "" {
		return h
	}
	return n.Name
}

func desiredNPC(n l2assign.Node, anns []v1alpha1.Announcement) npcwriter.Config {
	return npcwriter.Config{
		Name:   NPCName(n.Name),
		Source: npcwriter.Source{Kind: "Node", Name: n.Name},
		Spec: v1alpha1.NodeProxyConfigSpec{
			NodeSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelHostname: hostnameOf(n)}},
			Announcements: anns,
		},
	}
}

// writeNPCs makes the l2 NodeProxyConfigs match the assignment: one per announcing node,
// none for nodes with nothing to announce. Deletions and configs that only lose
// announcements are written first, so that during a handover an address is more
// likely to be briefly unanswered than answered by two nodes at once.
func (c *Controller) writeNPCs(ctx context.Context, res *l2assign.Result, nodes []l2assign.Node, existing []v1alpha1.NodeProxyConfig) error {
	have := map[string]*v1alpha1.NodeProxyConfig{}
	for i := range existing {
		have[existing[i].Name] = &existing[i]
	}
	byName := map[string]l2assign.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	var shrink, grow []npcwriter.Config // in write order
	for node, anns := range res.Announcements {
		n, ok := byName[node]
		if !ok {
			n = l2assign.Node{Name: node}
		}
		d := desiredNPC(n, anns)
		if cur := have[d.Name]; cur != nil && subset(anns, cur.Spec.Announcements) {
			shrink = append(shrink, d)
		} else {
			grow = append(grow, d)
		}
	}
	return c.npcs.ApplyOrdered(ctx, append(shrink, grow...), true)
}

// subset reports whether every announcement of a is in b.
func subset(a, b []v1alpha1.Announcement) bool {
	for _, x := range a {
		found := false
		for _, y := range b {
			if equality.Semantic.DeepEqual(x, y) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// NodeOf is the node an l2 NodeProxyConfig is for: its source (the writer's
// annotation), or the annotation releases before the writer used.
func NodeOf(npc *v1alpha1.NodeProxyConfig) string {
	if src, ok := npcwriter.SourceOf(npc); ok {
		return src.Name
	}
	return npc.Annotations[AnnotationNode]
}

// adopt reads the previous assignment out of the controller's NodeProxyConfigs.
func adopt(npcs []v1alpha1.NodeProxyConfig) map[l2assign.Key]string {
	out := map[l2assign.Key]string{}
	for i := range npcs {
		node := NodeOf(&npcs[i])
		if node == "" {
			continue
		}
		for _, a := range npcs[i].Spec.Announcements {
			if k, ok := keyOf(a); ok {
				out[k] = node
			}
		}
	}
	return out
}

func keyOf(a v1alpha1.Announcement) (l2assign.Key, bool) {
	ip, err := netip.ParseAddr(a.IP)
	if err != nil {
		return l2assign.Key{}, false
	}
	return l2assign.Key{Service: types.NamespacedName{Namespace: a.Service.Namespace, Name: a.Service.Name}, IP: ip}, true
}
