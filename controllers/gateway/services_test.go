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
