package envoyconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/npcwriter"
	translate "github.com/portico-dev/portico/internal/translate/envoyconfig"
)

// memoEntry is one config's translation and what it was made from.
type memoEntry struct {
	generation int64
	services   string // resourceVersions of the Services it redirects
	out        translate.Output
}

// judged is one config at the end of a pass.
type judged struct {
	obj    translate.Object
	out    translate.Output
	errs   field.ErrorList
	reason v1alpha1.ConditionReason
}

// reconcile is one pass: translate what changed, decide conflicts (older first),
// write the accepted configs (and delete the others'), then the statuses.
func (c *Controller) reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	objs, err := c.list(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	nodes, err := c.nodeLabels(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	all := make([]*judged, 0, len(objs))
	seen := make(map[types.UID]bool, len(objs))
	refs := map[types.NamespacedName]bool{}
	for _, o := range objs {
		seen[o.Meta.GetUID()] = true
		for _, k := range o.ServiceKeys() {
			refs[k] = true
		}
		out := c.translate(ctx, o)
		all = append(all, &judged{obj: o, out: out, errs: out.Errors, reason: v1alpha1.ReasonInvalid})
	}
	c.setReferenced(refs)
	for uid := range c.memo {
		if !seen[uid] {
			delete(c.memo, uid)
		}
	}

	// The older config keeps a port; a newer one binding it on the same nodes is not accepted.
	slices.SortFunc(all, func(a, b *judged) int {
		if translate.Older(a.obj.Claimant(nil), b.obj.Claimant(nil)) {
			return -1
		}
		return 1
	})
	var holders []translate.Claimant
	var configs []npcwriter.Config
	for _, j := range all {
		if len(j.errs) == 0 && len(j.out.Ports) > 0 {
			cl := j.obj.Claimant(j.out.Ports)
			if conflicts := translate.Conflicts(cl, holders, nodes); len(conflicts) > 0 {
				j.errs, j.reason = conflicts, v1alpha1.ReasonConflict
			} else {
				holders = append(holders, cl)
			}
		}
		if len(j.errs) == 0 {
			configs = append(configs, npcwriter.Config{Name: j.out.Name, Spec: j.out.Spec,
				Source: npcwriter.Source{Kind: j.obj.Kind, Namespace: j.obj.Meta.GetNamespace(), Name: j.obj.Meta.GetName()}})
		}
	}
	var errs []error
	if err := c.npcs.ApplySet(ctx, configs); err != nil {
		errs = append(errs, err)
	}
	names := map[string]bool{}
	for _, j := range all {
		if len(j.errs) == 0 {
			names[j.out.Name] = true
			c.written[j.out.Name] = j.obj.Meta.GetGeneration()
		}
	}
	for name := range c.written {
		if !names[name] {
			delete(c.written, name)
		}
	}
	c.verdictMu.Lock()
	for name := range c.verdicts {
		if !names[name] {
			delete(c.verdicts, name)
		}
	}
	c.verdictMu.Unlock()
	errs = append(errs, c.updateStatuses(ctx, all)...)
	log := ctrl.LoggerFrom(ctx)
	log.V(1).Info("pass", "configs", len(all), "accepted", len(configs), "took", time.Since(start))
	if len(errs) > 0 {
		log.Error(errors.Join(errs...), "envoyconfig pass incomplete, retrying")
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// statusWorkers bounds the status writes in flight: a cold start writes one per
// config, and one at a time they took most of a pass over 1,000 configs.
const statusWorkers = 16

func (c *Controller) updateStatuses(ctx context.Context, all []*judged) []error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	work := make(chan *judged)
	for range min(statusWorkers, len(all)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := c.updateStatus(ctx, j); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range all {
		work <- j
	}
	close(work)
	wg.Wait()
	return errs
}

// list reads every EnvoyConfig and ClusterEnvoyConfig from the cache, without
// copies: a pass only reads them (updateStatus copies the one it changes).
func (c *Controller) list(ctx context.Context) ([]translate.Object, error) {
	var ecs v1alpha1.EnvoyConfigList
	if err := c.client.List(ctx, &ecs, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var cecs v1alpha1.ClusterEnvoyConfigList
	if err := c.client.List(ctx, &cecs, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]translate.Object, 0, len(ecs.Items)+len(cecs.Items))
	for i := range ecs.Items {
		if ecs.Items[i].DeletionTimestamp == nil {
			o, _ := translate.Of(&ecs.Items[i])
			out = append(out, o)
		}
	}
	for i := range cecs.Items {
		if cecs.Items[i].DeletionTimestamp == nil {
			o, _ := translate.Of(&cecs.Items[i])
			out = append(out, o)
		}
	}
	return out, nil
}

// translate returns o's translation, from the memo when neither o's generation nor
// the Services it redirects changed.
func (c *Controller) translate(ctx context.Context, o translate.Object) translate.Output {
	svcs := map[types.NamespacedName]*corev1.Service{}
	var versions strings.Builder
	for _, k := range o.ServiceKeys() {
		svc := &corev1.Service{}
		if err := c.client.Get(ctx, k, svc, client.UnsafeDisableDeepCopy); err != nil {
			versions.WriteString("-,")
			continue
		}
		svcs[k] = svc
		versions.WriteString(svc.ResourceVersion + ",")
	}
	uid := o.Meta.GetUID()
	if m := c.memo[uid]; m != nil && m.generation == o.Meta.GetGeneration() && m.services == versions.String() {
		return m.out
	}
	out := translate.Translate(o.Input(func(k types.NamespacedName) *corev1.Service { return svcs[k] }))
	c.memo[uid] = &memoEntry{generation: o.Meta.GetGeneration(), services: versions.String(), out: out}
	return out
}

func (c *Controller) setReferenced(refs map[types.NamespacedName]bool) {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	c.referenced = refs
}

// nodeLabels are the labels of every node (metadata only).
func (c *Controller) nodeLabels(ctx context.Context) ([]map[string]string, error) {
	var meta metav1.PartialObjectMetadataList
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := c.client.List(ctx, &meta, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	out := make([]map[string]string, 0, len(meta.Items))
	for _, n := range meta.Items {
		out = append(out, n.Labels)
	}
	return out, nil
}
