package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/cachelist"
	"github.com/portico-dev/portico/nodeagent/render"
	"github.com/portico-dev/portico/nodeagent/secrets"
	"github.com/portico-dev/portico/nodeagent/xds"
)

// agent is the state of the sync loop. Only run's goroutine touches the fields below
// the channels, so they need no lock.
type agent struct {
	cfg    Config
	log    logr.Logger
	cache  cache.Cache
	xds    *xds.Server
	ports  *Ports
	report *reporter
	dp     *datapath
	l2     *announcer

	trigger      chan struct{}
	configsDirty atomic.Bool
	// versions are the resourceVersions of configs updated without a change a
	// sync reads, by name, for the next sync to report (noteVersion).
	versionsMu     sync.Mutex
	versions       map[string]string
	endpointsDirty atomic.Bool
	// backends is the set of "<namespace>/<name>" of the backend Services in use, read by
	// the event handlers to ignore EndpointSlices nobody asked for.
	backendsMu sync.RWMutex
	backends   map[string]bool

	// secrets watches the Secrets the selected configs list; converted keeps their
	// SDS form until they change.
	secrets   *secrets.Watcher
	converted map[string]*convertedSecret

	// renderer keeps each config's parse between syncs (created on first use).
	renderer   *render.Renderer
	out        render.Output
	selected   map[string]string
	rejectedRV map[string]string
	rejected   []v1alpha1.RejectedConfig
	endpoints  int
	// endpointsSynced: syncEndpoints ran at least once.
	endpointsSynced bool
	announced       int
	// dpOpenErr is why the datapath could not be opened or attached (retried every
	// DeviceRescan); dpSyncErr why the last redirect map sync failed.
	dpOpenErr  error
	dpSyncErr  error
	xdsErr     error
	xdsVersion string
	edsErr     error
}

func (a *agent) kick(configs bool) {
	if configs {
		a.configsDirty.Store(true)
	} else {
		a.endpointsDirty.Store(true)
	}
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

func (a *agent) isBackend(obj any) bool {
	o, ok := obj.(client.Object)
	if !ok {
		if d, isTomb := obj.(toolscache.DeletedFinalStateUnknown); isTomb {
			o, ok = d.Obj.(client.Object)
		}
		if !ok {
			return true // cannot tell: resync rather than miss a change
		}
	}
	name := o.GetName()
	if _, isSlice := o.(*discoveryv1.EndpointSlice); isSlice {
		name = o.GetLabels()[serviceNameLabel]
	}
	a.backendsMu.RLock()
	defer a.backendsMu.RUnlock()
	return a.backends[o.GetNamespace()+"/"+name]
}

// watch calls onEvent for every add and delete of obj's kind, and for the updates
// moved reports as mattering (every update when moved is nil); onQuiet, if set,
// gets the others.
func (a *agent) watch(ctx context.Context, obj client.Object, onEvent func(any), moved func(o, n any) bool, onQuiet func(any)) error {
	inf, err := a.cache.GetInformer(ctx, obj)
	if err != nil {
		return fmt.Errorf("agent: watching %T: %w", obj, err)
	}
	ignored := ignoredUpdates.WithLabelValues(reflect.TypeOf(obj).Elem().Name())
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: onEvent,
		UpdateFunc: func(o, n any) {
			if moved == nil || moved(o, n) {
				onEvent(n)
				return
			}
			ignored.Inc()
			if onQuiet != nil {
				onQuiet(n)
			}
		},
		DeleteFunc: onEvent,
	})
	return err
}

// configMoved reports whether an update changed what a sync reads of a
// NodeProxyConfig: its spec (generation), labels, annotations or deletion. A status
// write is none of these, and every producer writes one per config whose verdict
// moves: each spec change is followed by one. Syncing on those cost a full sync,
// O(selected configs), per status write. The new resourceVersion is still
// reported (noteVersion): what is applied at the old one is applied at it.
func configMoved(o, n any) bool {
	oc, ok := o.(*v1alpha1.NodeProxyConfig)
	nc, ok2 := n.(*v1alpha1.NodeProxyConfig)
	if !ok || !ok2 {
		return true
	}
	return oc.Generation != nc.Generation || !maps.Equal(oc.Labels, nc.Labels) ||
		!maps.Equal(oc.Annotations, nc.Annotations) || !oc.DeletionTimestamp.Equal(nc.DeletionTimestamp)
}

// nodeMoved reports whether an update changed what a sync reads of the agent's Node:
// its labels (config selection) and addresses (guardVIPs). The kubelet rewrites the
// Node's status for its own reasons (conditions, images, heartbeats on old clusters).
func nodeMoved(o, n any) bool {
	on, ok := o.(*corev1.Node)
	nn, ok2 := n.(*corev1.Node)
	if !ok || !ok2 {
		return true
	}
	return !maps.Equal(on.Labels, nn.Labels) || !slices.Equal(on.Status.Addresses, nn.Status.Addresses)
}

// run is the sync loop: it waits for a change and applies the result. A change after a
// quiet spell is applied at once; one arriving less than Debounce after the previous
// sync ended waits out the rest of that time, so the events of a burst are coalesced
// and syncs are at least Debounce apart, as when every change waited for Debounce, but
// an isolated change (the common case: one producer updating one config) reaches Envoy
// without that wait. The first sync happens as soon as the caches are synced, so a
// restarted agent serves Envoy without waiting for an event.
func (a *agent) run(ctx context.Context) error {
	onConfig := func(any) { a.kick(true) }
	onBackend := func(obj any) {
		if a.isBackend(obj) {
			a.kick(false)
		}
	}
	for _, w := range []struct {
		obj     client.Object
		fn      func(any)
		moved   func(o, n any) bool
		onQuiet func(any)
	}{
		{&v1alpha1.NodeProxyConfig{}, onConfig, configMoved, a.noteVersion},
		{&corev1.Node{}, onConfig, nodeMoved, nil},
		// TODO(scale): every agent caches every EndpointSlice and Service in the cluster;
		// watching only the backend Services (one informer per namespace, or a label
		// selector maintained by the producers) would bound it.
		{&discoveryv1.EndpointSlice{}, onBackend, nil, nil},
		{&corev1.Service{}, onBackend, nil, nil},
	} {
		if err := a.watch(ctx, w.obj, w.fn, w.moved, w.onQuiet); err != nil {
			return err
		}
	}
	if !a.cache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	if a.dp != nil {
		a.dpOpenErr = a.dp.ensure()
		if a.dpOpenErr != nil {
			a.log.Error(a.dpOpenErr, "datapath not ready; serving xDS only until it recovers")
		}
	}
	a.kick(true)

	rescan := time.NewTicker(a.cfg.DeviceRescan)
	defer rescan.Stop()
	var lastSync time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.xds.Changes():
			a.report.Poke()
			continue
		case <-rescan.C:
			if a.dp != nil {
				err := a.dp.ensure()
				changed := (err == nil) != (a.dpOpenErr == nil) || (err != nil && err.Error() != a.dpOpenErr.Error())
				a.dpOpenErr = err
				if changed {
					// A datapath that just came up has an empty or stale map: resync it.
					a.configsDirty.Store(true)
				} else {
					continue
				}
			} else {
				continue
			}
		case <-a.trigger:
			if wait := a.cfg.Debounce - time.Since(lastSync); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
		}
		// Only a rebuild spaces the next one: a sync that just reported the versions
		// of status writes (which follow every spec change) must not hold back the
		// next config change by Debounce.
		if a.sync(ctx) {
			lastSync = time.Now()
		}
	}
}

// sync applies what changed and reports; it returns whether it rebuilt anything
// (configs or endpoints), rather than only reporting moved resourceVersions.
func (a *agent) sync(ctx context.Context) (rebuilt bool) {
	backendsChanged := false
	if a.configsDirty.Swap(false) {
		rebuilt = true
		start := time.Now()
		before := a.out.BackendServices
		err := a.renderConfigs(ctx)
		syncs.WithLabelValues("configs").Inc()
		syncSeconds.WithLabelValues("configs").Observe(time.Since(start).Seconds())
		if err != nil {
			a.log.Error(err, "rendering configs; retrying")
			a.kick(true)
		} else {
			// The endpoints served depend on the backend Services and on what the cache
			// holds for them; a change to the latter sets endpointsDirty. A render that
			// keeps the Services (most config changes) leaves them as they are.
			backendsChanged = !a.endpointsSynced || !slices.EqualFunc(before, a.out.BackendServices, sameBackend)
		}
	}
	if moved := a.takeVersions(); len(moved) > 0 {
		a.raiseVersions(moved)
	}
	if a.endpointsDirty.Swap(false) || backendsChanged {
		rebuilt = true
		start := time.Now()
		a.syncEndpoints(ctx)
		a.endpointsSynced = true
		syncs.WithLabelValues("endpoints").Inc()
		syncSeconds.WithLabelValues("endpoints").Observe(time.Since(start).Seconds())
	}
	a.report.Update(a.buildReport())
	return rebuilt
}

// selectConfigs returns the configs whose nodeSelector matches the node's labels, and
// rejections for configs whose selector does not parse.
func (a *agent) selectConfigs(ctx context.Context) ([]*v1alpha1.NodeProxyConfig, []v1alpha1.RejectedConfig, map[string]string, error) {
	node := &corev1.Node{}
	var nodeLabels labels.Set
	switch err := a.cache.Get(ctx, client.ObjectKey{Name: a.cfg.NodeName}, node); {
	case apierrors.IsNotFound(err):
		// Without a Node object only configs selecting every node apply.
	case err != nil:
		return nil, nil, nil, err
	default:
		nodeLabels = node.Labels
	}
	// The informer's own objects, not copies (not even the shallow ones a List makes):
	// every sync lists every config, and copying them all each time is allocation for
	// nothing, since neither selection nor render modifies its input (render tests
	// check that) and the cache replaces an object on update rather than changing it.
	all, err := cachelist.List(ctx, a.cache, &v1alpha1.NodeProxyConfig{}, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	var sel []*v1alpha1.NodeProxyConfig
	var rejected []v1alpha1.RejectedConfig
	rvs := make(map[string]string, len(all))
	for _, c := range all {
		if c.DeletionTimestamp != nil {
			continue
		}
		ok, err := selects(c.Spec.NodeSelector, nodeLabels)
		if err != nil {
			rvs[c.Name] = c.ResourceVersion
			rejected = append(rejected, v1alpha1.RejectedConfig{Name: c.Name, Generation: c.Generation,
				Reason: v1alpha1.ReasonInvalidSelector, Message: truncate("spec.nodeSelector: "+err.Error(), 1024)})
			continue
		}
		if ok {
			rvs[c.Name] = c.ResourceVersion
			if msg := producerProblem(c); msg != "" {
				rejected = append(rejected, v1alpha1.RejectedConfig{Name: c.Name, Generation: c.Generation,
					Reason: ReasonProducerNotAllowed, Message: msg})
				continue
			}
			sel = append(sel, c)
		}
	}
	return sel, rejected, rvs, nil
}

// selects reports whether a nodeSelector selects a node with the given labels: nil or
// empty selects every node (metav1.LabelSelectorAsSelector alone would make nil select none).
func selects(s *metav1.LabelSelector, l labels.Set) (bool, error) {
	if s == nil {
		return true, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return false, err
	}
	return sel.Matches(l), nil
}

func (a *agent) renderConfigs(ctx context.Context) error {
	configs, rejected, rvs, err := a.selectConfigs(ctx)
	if err != nil {
		return err
	}
	configs, rejected = a.guardVIPs(ctx, configs, rejected)
	if a.renderer == nil {
		a.renderer = render.NewRenderer()
	}
	refs := render.SecretRefs(configs)
	a.secrets.Set(refs)
	in := render.Input{Configs: configs, ProxyPorts: a.ports.Assigned(), Secrets: a.secretStates(refs)}
	if a.dp != nil {
		in.RedirectCapacity = a.dp.capacity()
	}
	out := a.renderer.Render(in)
	if len(out.ListenersNeedingPorts) > 0 {
		if err := a.ports.Allocate(out.ListenersNeedingPorts); err != nil {
			a.log.Error(err, "allocating proxy ports")
		}
		in.ProxyPorts = a.ports.Assigned()
		out = a.renderer.Render(in)
	}
	// Ports stay reserved for every listener a selected config redirects to, applied or
	// not, so a config that is rejected for a while gets its old port back.
	var keep []string
	waiting := map[string]bool{}
	for _, l := range out.ListenersNeedingPorts {
		waiting[l] = true
	}
	for _, c := range configs {
		held := false
		for _, r := range c.Spec.Redirects {
			keep = append(keep, r.Listener)
			held = held || waiting[r.Listener]
		}
		if held {
			rejected = append(rejected, v1alpha1.RejectedConfig{Name: c.Name, Generation: c.Generation,
				Reason:  v1alpha1.ReasonProxyPortsExhausted,
				Message: fmt.Sprintf("no free proxy port in %d-%d for its listeners", a.cfg.ProxyPortMin, a.cfg.ProxyPortMax)})
		}
	}
	if err := a.ports.Retain(keep); err != nil {
		a.log.Error(err, "releasing proxy ports")
	}

	// Envoy first, then the redirect map: a new redirect must find its listener, and
	// render guarantees that what it returns is servable (it validates exactly what
	// SetResources does), so a failure here is a bug, reported on NodeProxy. If it
	// happens, nothing of this render counts as applied: the previous output, which
	// is what Envoy still has, stays the one reported.
	version, err := a.xds.SetResources(ctx, out.Resources)
	a.xdsErr = err
	if err != nil {
		a.log.Error(err, "serving rendered resources; keeping the previous snapshot")
		a.selected, a.rejectedRV = rvs, rvs
		return nil
	}
	a.xdsVersion = version
	if a.dp != nil {
		// Synced even when attaching to some interface failed: the others still redirect.
		a.dpSyncErr = a.dp.sync(out.Redirects)
		if a.dpSyncErr != nil {
			out.Applied = withoutRedirecting(out.Applied, configs)
		}
	}
	if a.l2 != nil {
		a.announced = a.l2.set(out.Announcements)
	}
	a.out, a.selected, a.rejectedRV = out, rvs, rvs
	selectedConfigs.Set(float64(len(rvs)))
	a.rejected = append(rejected, out.Rejected...)

	set := map[string]bool{}
	for _, b := range out.BackendServices {
		set[b.Namespace+"/"+b.Name] = true
	}
	a.backendsMu.Lock()
	a.backends = set
	a.backendsMu.Unlock()
	a.log.V(1).Info("rendered", "selected", len(configs), "applied", len(out.Applied),
		"rejected", len(a.rejected), "redirects", len(out.Redirects), "xdsVersion", a.xdsVersion)
	return nil
}

func sameBackend(x, y v1alpha1.BackendService) bool {
	return x.Namespace == y.Namespace && x.Name == y.Name && slices.Equal(x.Ports, y.Ports)
}

func (a *agent) syncEndpoints(ctx context.Context) {
	all := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, b := range a.out.BackendServices {
		var svc *corev1.Service
		s := &corev1.Service{}
		if err := a.cache.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: b.Name}, s); err == nil {
			svc = s
		}
		var list discoveryv1.EndpointSliceList
		if err := a.cache.List(ctx, &list, client.InNamespace(b.Namespace),
			client.MatchingLabels{serviceNameLabel: b.Name}); err != nil {
			a.log.Error(err, "listing EndpointSlices", "service", b.Namespace+"/"+b.Name)
			continue
		}
		eps := make([]*discoveryv1.EndpointSlice, len(list.Items))
		for i := range list.Items {
			eps[i] = &list.Items[i]
		}
		for name, c := range BuildEndpoints(b, svc, eps) {
			all[name] = c
		}
	}
	a.edsErr = a.xds.SetEndpoints(all)
	if a.edsErr != nil {
		a.log.Error(a.edsErr, "serving endpoints")
	}
	a.endpoints = countEndpoints(all)
}

func (a *agent) buildReport() Report {
	r := Report{
		Selected:         a.selected,
		Applied:          a.out.Applied,
		Rejected:         a.rejected,
		RejectedRV:       a.rejectedRV,
		Redirects:        len(a.out.Redirects),
		Listeners:        len(a.out.Resources.Listeners),
		Clusters:         len(a.out.Resources.Clusters),
		Endpoints:        a.endpoints,
		FragmentsNotHere: a.out.FragmentsNotHere,
		DatapathDisabled: a.dp == nil,
		DatapathErr:      errors.Join(a.dpOpenErr, a.dpSyncErr),
		XDSErr:           a.xdsErr,
		XDSVersion:       a.xdsVersion,
		AnnouncedIPs:     a.announced,
	}
	return r
}

// withoutRedirecting drops from applied the configs that have redirects: the
// redirect map could not be programmed, so they are not applied on this node
// (they stay pending, and DatapathReady says why) until a sync succeeds.
func withoutRedirecting(applied []render.Applied, configs []*v1alpha1.NodeProxyConfig) []render.Applied {
	redirecting := map[string]bool{}
	for _, c := range configs {
		if len(c.Spec.Redirects) > 0 {
			redirecting[c.Name] = true
		}
	}
	out := applied[:0:0]
	for _, ap := range applied {
		if !redirecting[ap.Name] {
			out = append(out, ap)
		}
	}
	return out
}

// noteVersion records the resourceVersion of a config whose update changed nothing
// a sync reads (a producer's status write) and wakes the loop to report it. A
// producer or kubectl-portico comparing the node's watermark with the config's
// live resourceVersion would otherwise see the node behind until the config's
// spec next changed.
func (a *agent) noteVersion(obj any) {
	c, ok := obj.(*v1alpha1.NodeProxyConfig)
	if !ok {
		return
	}
	a.versionsMu.Lock()
	if a.versions == nil {
		a.versions = map[string]string{}
	}
	a.versions[c.Name] = c.ResourceVersion
	a.versionsMu.Unlock()
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

func (a *agent) takeVersions() map[string]string {
	a.versionsMu.Lock()
	defer a.versionsMu.Unlock()
	moved := a.versions
	a.versions = nil
	return moved
}

// raiseVersions moves the reported resourceVersion of the selected configs in
// moved forward (never back: a sync since may have read a later one), without a
// render. The reporter reads the map it was handed on its own goroutine, so a
// change makes a new one: a copy of the names, not a render of the configs.
func (a *agent) raiseVersions(moved map[string]string) {
	var next map[string]string
	for name, rv := range moved {
		if cur, ok := a.selected[name]; ok && cmpRV(rv, cur) > 0 {
			if next == nil {
				next = maps.Clone(a.selected)
			}
			next[name] = rv
		}
	}
	if next != nil {
		// One map for both, as a render leaves them.
		a.selected, a.rejectedRV = next, next
		syncs.WithLabelValues("versions").Inc()
	}
}
