package l2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2assign"
)

// AnnotationNode names the node an l2 NodeProxyConfig is for. A label cannot: node names
// may be 253 characters, label values 63.
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

func desiredNPC(n l2assign.Node, anns []v1alpha1.Announcement) *v1alpha1.NodeProxyConfig {
	return &v1alpha1.NodeProxyConfig{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NPCName(n.Name),
			Labels:      map[string]string{v1alpha1.LabelProducer: Producer, v1alpha1.LabelSourceKind: "Node"},
			Annotations: map[string]string{AnnotationNode: n.Name},
		},
		Spec: v1alpha1.NodeProxyConfigSpec{
			NodeSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelHostname: hostnameOf(n)}},
			Announcements: anns,
		},
	}
}

// writeNPCs makes the l2 NodeProxyConfigs match the assignment: one per announcing node,
// none for nodes with nothing to announce. Objects that only lose announcements (and
// deletions) are written first, so that during a handover an address is more likely to
// be briefly unanswered than answered by two nodes at once.
func (c *Controller) writeNPCs(ctx context.Context, res *l2assign.Result, nodes []l2assign.Node, existing []v1alpha1.NodeProxyConfig) error {
	have := map[string]*v1alpha1.NodeProxyConfig{}
	for i := range existing {
		have[existing[i].Name] = &existing[i]
	}
	byName := map[string]l2assign.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	var shrink, grow []*v1alpha1.NodeProxyConfig // desired objects, in write order
	want := map[string]bool{}
	for node, anns := range res.Announcements {
		n, ok := byName[node]
		if !ok {
			n = l2assign.Node{Name: node}
		}
		d := desiredNPC(n, anns)
		want[d.Name] = true
		cur := have[d.Name]
		switch {
		case cur == nil:
			grow = append(grow, d)
		case upToDate(cur, d):
		case subset(anns, cur.Spec.Announcements):
			shrink = append(shrink, d)
		default:
			grow = append(grow, d)
		}
	}
	var errs []error
	for name, cur := range have {
		if !want[name] {
			err := c.client.Delete(ctx, cur, client.Preconditions{UID: &cur.UID})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	for _, d := range append(shrink, grow...) {
		errs = append(errs, c.put(ctx, d, have[d.Name]))
	}
	return errors.Join(errs...)
}

// put creates d or updates cur to it. A conflict means the cache is behind; the error
// requeues, and the next reconcile works from the newer version.
func (c *Controller) put(ctx context.Context, d, cur *v1alpha1.NodeProxyConfig) error {
	if cur == nil {
		err := c.client.Create(ctx, d)
		if apierrors.IsAlreadyExists(err) {
			// Exists but not labelled as ours (or not yet in the cache): never adopt
			// silently, say so and retry.
			return errors.New("NodeProxyConfig " + d.Name + " exists but is not in the cache as produced by l2: " + err.Error())
		}
		return err
	}
	upd := cur.DeepCopy()
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	for k, v := range d.Labels {
		upd.Labels[k] = v
	}
	for k, v := range d.Annotations {
		upd.Annotations[k] = v
	}
	upd.Spec = d.Spec
	return c.client.Update(ctx, upd)
}

func upToDate(cur, d *v1alpha1.NodeProxyConfig) bool {
	for k, v := range d.Labels {
		if cur.Labels[k] != v {
			return false
		}
	}
	for k, v := range d.Annotations {
		if cur.Annotations[k] != v {
			return false
		}
	}
	return equality.Semantic.DeepEqual(cur.Spec, d.Spec)
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

// adopt reads the previous assignment out of the controller's NodeProxyConfigs.
func adopt(npcs []v1alpha1.NodeProxyConfig) map[l2assign.Key]string {
	out := map[l2assign.Key]string{}
	for i := range npcs {
		node := npcs[i].Annotations[AnnotationNode]
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
