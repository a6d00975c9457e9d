// Pure unit tests of what a pass writes (fake client): the writes it must not
// send, and those it must not give up on.
package gateway

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/portico-dev/portico/internal/gatewayparams"
	"github.com/portico-dev/portico/internal/scheme"
	translate "github.com/portico-dev/portico/internal/translate/gateway"
)

// TestUnchangedServiceIsNotWritten: a Gateway's Service as the apiserver
// keeps it (target ports defaulted to the ports) is found unchanged, so a
// pass sends no write for it. Every pass used to PUT each Gateway's Service.
// Pure unit test: the fake client does not default, the Service is stored
// defaulted as the apiserver would.
func TestUnchangedServiceIsNotWritten(t *testing.T) {
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw", UID: "u1"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "portico", Listeners: []gatewayv1.Listener{
			{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
			{Name: "https", Port: 443, Protocol: gatewayv1.HTTPSProtocolType},
		}}}
	s := scheme.New()
	stored := translate.GatewayService(gw, gatewayparams.Default())
	if err := controllerutil.SetControllerReference(gw, stored, s); err != nil {
		t.Fatal(err)
	}
	for i := range stored.Spec.Ports {
		stored.Spec.Ports[i].TargetPort = intstr.FromInt32(stored.Spec.Ports[i].Port)
	}
	// As an older release that let the apiserver allocate node ports left it.
	stored.Spec.Ports[0].NodePort = 30080
	writes := 0
	count := func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		writes++
		return c.Update(ctx, obj, opts...)
	}
	k := fake.NewClientBuilder().WithScheme(s).WithObjects(stored).WithInterceptorFuncs(interceptor.Funcs{Update: count}).Build()
	c := &Controller{client: k}
	got, err := c.ensureService(context.Background(), gw, gatewayparams.Default())
	if err != nil {
		t.Fatal(err)
	}
	if writes != 0 {
		t.Errorf("%d writes of an unchanged Service", writes)
	}
	// A real change is still written, keeping what the server set.
	gw.Spec.Listeners = append(gw.Spec.Listeners, gatewayv1.Listener{Name: "alt", Port: 8080, Protocol: gatewayv1.HTTPProtocolType})
	if got, err = c.ensureService(context.Background(), gw, gatewayparams.Default()); err != nil {
		t.Fatal(err)
	}
	if writes != 1 || len(got.Spec.Ports) != 3 || got.Spec.Ports[0].TargetPort != intstr.FromInt32(80) || got.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("after a new listener: %d writes, ports %+v", writes, got.Spec.Ports)
	}
	// A target port someone else changed is put back (by leaving it to the apiserver's default).
	edited := got.DeepCopy()
	edited.Spec.Ports[1].TargetPort = intstr.FromInt32(9999)
	if err := k.Update(context.Background(), edited); err != nil {
		t.Fatal(err)
	}
	if got, err = c.ensureService(context.Background(), gw, gatewayparams.Default()); err != nil {
		t.Fatal(err)
	}
	if writes != 3 || got.Spec.Ports[1].TargetPort == intstr.FromInt32(9999) {
		t.Errorf("after an edit of the target port: %d writes, ports %+v", writes, got.Spec.Ports)
	}
}

// TestRouteStatusConflictIsRetried: a route whose cached copy is older than
// the live one (another controller just wrote its own parent's status) gets
// Portico's status written on the live copy in the same pass, keeping the
// other controller's entry, and the pass does not fail (which would log an
// error and back the single key off). Pure unit test: the fake client, with
// the cache's copy handed to the pass as it was before the other write.
func TestRouteStatusConflictIsRetried(t *testing.T) {
	ctx := context.Background()
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", Generation: 1}}
	k := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(route).WithStatusSubresource(route).Build()
	cached := &gatewayv1.HTTPRoute{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(route), cached); err != nil {
		t.Fatal(err)
	}
	other := cached.DeepCopy()
	other.Status.Parents = []gatewayv1.RouteParentStatus{{ControllerName: "example.com/other", ParentRef: gatewayv1.ParentReference{Name: "theirs"}}}
	if err := k.Status().Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	c := &Controller{client: k, apiReader: k, opts: Options{ControllerName: translate.ControllerName}, routesDone: map[translate.RouteKey]routeDone{}}
	key := translate.RouteKey{Kind: translate.KindHTTPRoute, Namespace: "ns", Name: "r"}
	out := translate.Output{Routes: map[translate.RouteKey][]translate.ParentStatus{key: {{Ref: gatewayv1.ParentReference{Name: "gw"},
		Conditions: []translate.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "ok"}}}}}}
	if err := c.routeStatuses(ctx, translate.Input{HTTPRoutes: []*gatewayv1.HTTPRoute{cached}}, out); err != nil {
		t.Fatalf("the pass failed on the conflict: %v", err)
	}
	live := &gatewayv1.HTTPRoute{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(route), live); err != nil {
		t.Fatal(err)
	}
	var mine, theirs bool
	for _, p := range live.Status.Parents {
		mine = mine || (p.ControllerName == translate.ControllerName && p.ParentRef.Name == "gw")
		theirs = theirs || p.ControllerName == "example.com/other"
	}
	if !mine || !theirs {
		t.Errorf("status after the pass: %+v (Portico's entry %v, the other controller's %v)", live.Status.Parents, mine, theirs)
	}
}
