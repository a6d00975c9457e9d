package agent

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/portico-dev/portico/internal/testenv"
)

// env is one control plane shared by the package's integration tests (start-up costs seconds).
var env *testenv.Env

const testNamespace = "portico-system"

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{}, func(e *testenv.Env) (func(), error) {
		env = e
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}
		return func() {}, e.Client.Create(context.Background(), ns)
	})
}

// failingTransport refuses every request while down is set, as an unreachable apiserver would.
type failingTransport struct {
	rt   http.RoundTripper
	down *atomic.Bool
}

func (f failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.down.Load() {
		return nil, errors.New("test: apiserver unreachable")
	}
	return f.rt.RoundTrip(r)
}

func TestHeartbeatRenewsFencesAndReleases(t *testing.T) {
	var down atomic.Bool
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 100, 100
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return failingTransport{rt, &down} }
	cs := kubernetes.NewForConfigOrDie(cfg)
	leases := cs.CoordinationV1().Leases(testNamespace)

	const node = "hb-node"
	hb, err := NewHeartbeat(leases, node, 50*time.Millisecond, time.Second, zap.New(zap.UseDevMode(true)))
	if err != nil {
		t.Fatal(err)
	}
	if !hb.Fenced() {
		t.Fatal("a heartbeat that never renewed must be fenced")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hb.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Created, held by the node, and renewed.
	var first time.Time
	eventually(t, 5*time.Second, "lease created", func() bool {
		l, err := leases.Get(ctx, LeaseName(node), metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil {
			return false
		}
		if *l.Spec.HolderIdentity != node || *l.Spec.LeaseDurationSeconds != 1 {
			t.Fatalf("unexpected lease spec %+v", l.Spec)
		}
		first = l.Spec.RenewTime.Time
		return true
	})
	eventually(t, 5*time.Second, "renewTime advances", func() bool {
		l, err := leases.Get(ctx, LeaseName(node), metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(first)
	})
	eventually(t, time.Second, "unfenced after renewal", func() bool { return !hb.Fenced() })

	// The apiserver becomes unreachable: fenced after the lease duration, not before.
	cut := time.Now()
	down.Store(true)
	eventually(t, 3*time.Second, "fenced", hb.Fenced)
	if took := time.Since(cut); took < 800*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("fenced %v after the apiserver went away; want about the lease duration (1s)", took)
	}
	select {
	case <-hb.Changes():
	default:
		t.Fatal("no change signalled when fencing")
	}
	down.Store(false)
	eventually(t, 3*time.Second, "unfenced after recovery", func() bool { return !hb.Fenced() })

	// Shutdown releases: holder cleared, so the L2 controller treats it as expired at once.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred receive
	l, err := leases.Get(context.Background(), LeaseName(node), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil || l.Spec.RenewTime != nil {
		t.Fatalf("lease not released: %+v", l.Spec)
	}
	if !hb.Fenced() {
		t.Fatal("released heartbeat not fenced")
	}
}

func TestHeartbeatRejectsBadTiming(t *testing.T) {
	if _, err := NewHeartbeat(nil, "n", time.Second, time.Second, zap.New()); err == nil {
		t.Fatal("duration < 2*interval accepted")
	}
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
