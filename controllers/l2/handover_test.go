package l2

import (
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2assign"
	"github.com/portico-dev/portico/internal/l2quorum"
)

// An address moving off a live node is withheld from its new node until the old one let
// go: without memberlist for the grace, with it until the old agent published that it
// applied its shrunk set. A move off a dead node is never held.
func TestHandoverFromALiveNodeWaitsForTheOldNode(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.1")
	key := l2assign.Key{Service: types.NamespacedName{Namespace: "d", Name: "web"}, IP: ip}
	ann := v1alpha1.Announcement{IP: ip.String(), Service: v1alpha1.ServiceRef{Namespace: "d", Name: "web"}}
	result := func() *l2assign.Result {
		return &l2assign.Result{Announcements: map[string][]v1alpha1.Announcement{"b": {ann}},
			Moves: []l2assign.Move{{Key: key, From: "a", To: "b"}}}
	}
	nodes := []l2assign.Node{{Name: "a", Live: true}, {Name: "b", Live: true}}
	// a's NodeProxyConfig as written in this reconcile: shrunk, without the address.
	shrunk := []v1alpha1.NodeProxyConfig{{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationNode: "a"}}}}
	t0 := time.Unix(1000, 0)

	c := &Controller{prev: map[l2assign.Key]string{key: "a"}, holdSince: map[string]time.Time{}}
	res := result()
	held, retry := c.holdHandovers(res, nodes, shrunk, t0)
	if held[key] != "a" || len(res.Announcements["b"]) != 0 || len(res.Moves) != 0 || retry == 0 {
		t.Fatalf("lease mode, at once: held %v, b gets %v, moves %v", held, res.Announcements["b"], res.Moves)
	}
	res = result()
	if held, _ := c.holdHandovers(res, nodes, shrunk, t0.Add(handoverGrace)); len(held) != 0 || len(res.Announcements["b"]) != 1 {
		t.Fatalf("lease mode, after the grace: still held %v", held)
	}

	// With memberlist: held until a publishes the hash of its (empty) set.
	c = &Controller{prev: map[l2assign.Key]string{key: "a"}, holdSince: map[string]time.Time{},
		members: &members{meta: map[string]l2quorum.Member{"a": {Name: "a", Applied: true, Hash: l2quorum.SetHash([]string{ip.String()})}}}}
	res = result()
	if held, _ := c.holdHandovers(res, nodes, shrunk, t0.Add(time.Hour)); held[key] != "a" {
		t.Fatal("granted before the old node applied its shrunk set")
	}
	c.members.meta["a"] = l2quorum.Member{Name: "a", Applied: true, Hash: l2quorum.SetHash(nil)}
	res = result()
	if held, _ := c.holdHandovers(res, nodes, shrunk, t0); len(held) != 0 || len(res.Moves) != 1 {
		t.Fatal("held after the old node applied its shrunk set")
	}

	// The old node is dead: no wait at all.
	c.members.meta["a"] = l2quorum.Member{Name: "a"}
	res = result()
	if held, _ := c.holdHandovers(res, []l2assign.Node{{Name: "a"}, {Name: "b", Live: true}}, shrunk, t0); len(held) != 0 {
		t.Fatal("a move off a dead node was held")
	}
}
