package agent

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// With memberlist the Lease only publishes the agent's memberlist address: written once
// (no write per heartbeat), released on stop.
func TestHeartbeatWrittenOnceWithMemberlist(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(env.Config)
	leases := cs.CoordinationV1().Leases(testNamespace)
	const node = "once-node"
	hb, err := NewHeartbeat(leases, node, -1, DefaultHeartbeatDuration, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	hb.Annotations = map[string]string{AnnotationMemberlistAddress: "10.0.0.9:7946"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hb.Run(ctx) }()
	var rv string
	eventually(t, 5*time.Second, "the Lease written", func() bool {
		l, err := leases.Get(context.Background(), LeaseName(node), metav1.GetOptions{})
		if err != nil || l.Annotations[AnnotationMemberlistAddress] != "10.0.0.9:7946" {
			return false
		}
		rv = l.ResourceVersion
		return true
	})
	time.Sleep(3 * time.Second) // longer than the single write's retry period
	l, err := leases.Get(context.Background(), LeaseName(node), metav1.GetOptions{})
	if err != nil || l.ResourceVersion != rv {
		t.Fatalf("the Lease was written again (resourceVersion %s, was %s): %v", l.ResourceVersion, rv, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l, err = leases.Get(context.Background(), LeaseName(node), metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity != nil {
		t.Fatalf("not released on stop: %+v %v", l.Spec, err)
	}
}
