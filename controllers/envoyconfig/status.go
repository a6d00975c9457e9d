package envoyconfig

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/npcstatus"
	translate "github.com/portico-dev/portico/internal/translate/envoyconfig"
)

// Reasons of the Events that mirror the nodes' verdict on a config.
const (
	EventProgrammed = npcstatus.EventProgrammed
	EventRejected   = npcstatus.EventRejected
	EventPending    = npcstatus.EventPending
)

// maxMessage keeps a condition message readable (the API allows 32 KiB).
const maxMessage = 4096

// verdictOf is a verdict and the spec write (npcwriter.Writer.Written) it judges.
type verdictOf struct {
	cond    metav1.Condition
	written string
}

// onVerdicts records the nodes' verdicts (from internal/npcstatus), sends an Event
// on the source at each transition, and wakes a pass, which mirrors them into the
// sources' Programmed conditions.
func (c *Controller) onVerdicts(ctx context.Context, changes []npcstatus.Change) {
	c.verdictMu.Lock()
	for _, ch := range changes {
		status, reason, msg := ch.Verdict.Condition()
		c.verdicts[ch.Config.Name] = verdictOf{
			cond:    metav1.Condition{Type: string(v1alpha1.ConditionProgrammed), Status: status, Reason: string(reason), Message: msg},
			written: c.npcs.Written(ch.Config.Name),
		}
	}
	c.verdictMu.Unlock()
	for _, ch := range changes {
		if !ch.Transition() {
			continue
		}
		if obj := c.sourceOf(ctx, ch.Config); obj != nil {
			typ, why := ch.Event()
			c.recorder.Eventf(obj, nil, typ, why, "Program", "%s", ch.Verdict.Summary())
		}
	}
	select {
	case c.wake <- event.GenericEvent{Object: &v1alpha1.EnvoyConfig{}}:
	default: // a pass is already due
	}
}

// sourceOf is the config's source object, read from the cache (Events need its UID).
func (c *Controller) sourceOf(ctx context.Context, cfg *v1alpha1.NodeProxyConfig) client.Object {
	key := types.NamespacedName{Namespace: cfg.Labels[v1alpha1.LabelSourceNamespace], Name: cfg.Labels[v1alpha1.LabelSourceName]}
	var obj client.Object = &v1alpha1.EnvoyConfig{}
	if cfg.Labels[v1alpha1.LabelSourceKind] == translate.KindClusterEnvoyConfig {
		obj = &v1alpha1.ClusterEnvoyConfig{}
	}
	if err := c.client.Get(ctx, key, obj); err != nil {
		return nil
	}
	return obj
}

// updateStatus writes Accepted and Programmed of one config when they changed.
func (c *Controller) updateStatus(ctx context.Context, j *judged) error {
	cur := statusOf(j.obj.Meta)
	st := cur.DeepCopy()
	gen := j.obj.Meta.GetGeneration()
	changed := false
	if len(j.errs) > 0 {
		changed = conditions.False(&st.Conditions, gen, v1alpha1.ConditionAccepted, j.reason, truncate(j.errs.ToAggregate().Error()))
		changed = conditions.False(&st.Conditions, gen, v1alpha1.ConditionProgrammed, v1alpha1.ReasonInvalid,
			"not programmed: the config is not accepted (see Accepted)") || changed
	} else {
		msg := "the resources decode, validate and resolve"
		if len(j.out.Warnings) > 0 {
			msg += "; " + strings.Join(j.out.Warnings, "; ")
		}
		changed = conditions.True(&st.Conditions, gen, v1alpha1.ConditionAccepted, v1alpha1.ReasonValid, truncate(msg))
		c.verdictMu.Lock()
		v, ok := c.verdicts[j.out.Name]
		c.verdictMu.Unlock()
		written, had := c.written[j.out.Name]
		if !had {
			written = gen
		}
		// A verdict on an earlier write says nothing of this one.
		if ok && v.written == c.npcs.Written(j.out.Name) {
			v.cond.Message = truncate(v.cond.Message)
			changed = conditions.Mirror(&st.Conditions, written, v1alpha1.ConditionProgrammed, v.cond) || changed
		} else {
			changed = conditions.False(&st.Conditions, written, v1alpha1.ConditionProgrammed, v1alpha1.ReasonPending,
				"waiting for the nodes' verdict") || changed
		}
	}
	if st.ObservedGeneration != gen {
		st.ObservedGeneration, changed = gen, true
	}
	if !changed {
		return nil
	}
	var upd client.Object
	switch o := j.obj.Meta.(type) {
	case *v1alpha1.EnvoyConfig:
		cp := o.DeepCopy()
		cp.Status = *st
		upd = cp
	case *v1alpha1.ClusterEnvoyConfig:
		cp := o.DeepCopy()
		cp.Status = *st
		upd = cp
	}
	if err := c.client.Status().Patch(ctx, upd, client.MergeFrom(j.obj.Meta)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("status of %s %s: %w", j.obj.Kind, client.ObjectKeyFromObject(j.obj.Meta), err)
	}
	return nil
}

func statusOf(o client.Object) *v1alpha1.EnvoyConfigStatus {
	switch c := o.(type) {
	case *v1alpha1.EnvoyConfig:
		return &c.Status
	case *v1alpha1.ClusterEnvoyConfig:
		return &c.Status
	}
	return &v1alpha1.EnvoyConfigStatus{}
}

func truncate(s string) string {
	if len(s) > maxMessage {
		return s[:maxMessage-3] + "..."
	}
	return s
}
