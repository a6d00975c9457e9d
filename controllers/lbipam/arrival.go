package lbipam

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlreconcile "sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
)

// arrivals numbers pools in the order their creation reaches the controller, which is
// etcd's commit order: the watch delivers events in revision order, and the informer
// calls one handler's events in that order. It tells apart two pools created in the
// same second (creationTimestamp's resolution; see lbipam.Pool.Rank), which is when a
// webhook checking each against the other both admit them.
type arrivals struct {
	mu    sync.Mutex
	next  uint64
	byUID map[types.UID]uint64
}

func newArrivals() *arrivals {
	// 0 and 1 are for pools that existed before the controller started.
	return &arrivals{next: 2, byUID: map[types.UID]uint64{}}
}

func (a *arrivals) created(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.byUID[uid]; !ok {
		a.byUID[uid] = a.next
		a.next++
	}
}

func (a *arrivals) deleted(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byUID, uid)
}

// rank is p's place in the arrival order. A pool that was there when the controller
// started (or came back in a relist) has no arrival: its creation order is lost, but the
// verdict its status records is not, so a pool written Conflicting ranks after one that
// is not, and a restart moves no conflict mark between pools created in the same second.
func (a *arrivals) rank(p *v1alpha1.LoadBalancerIPPool) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.byUID[p.UID]; ok {
		return r
	}
	var r uint64
	if c := conditions.Get(p.Status.Conditions, v1alpha1.ConditionConflicting); c != nil && c.Status == metav1.ConditionTrue {
		r = 1
	}
	a.byUID[p.UID] = r
	return r
}

// arrivalHandler enqueues pool events like handler.EnqueueRequestForObject, recording
// arrivals first, in the informer's order.
type arrivalHandler struct {
	handler.EventHandler
	arrivals *arrivals
}

func (h arrivalHandler) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[ctrlreconcile.Request]) {
	if !e.IsInInitialList {
		h.arrivals.created(e.Object.GetUID())
	}
	h.EventHandler.Create(ctx, e, q)
}

func (h arrivalHandler) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[ctrlreconcile.Request]) {
	h.arrivals.deleted(e.Object.GetUID())
	h.EventHandler.Delete(ctx, e, q)
}
