// Package conditions sets status conditions the one way Portico sets them: always with
// the object's generation as ObservedGeneration, typed types and reasons, and the
// transition time kept when only the message changes.
package conditions

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// Set puts a condition into conds and reports whether anything changed, so callers write
// status only when it did.
func Set(conds *[]metav1.Condition, generation int64, t v1alpha1.ConditionType, status metav1.ConditionStatus, reason v1alpha1.ConditionReason, message string) bool {
	return meta.SetStatusCondition(conds, metav1.Condition{
		Type:               string(t),
		Status:             status,
		ObservedGeneration: generation,
		Reason:             string(reason),
		Message:            message,
	})
}

// True is Set with status True.
func True(conds *[]metav1.Condition, generation int64, t v1alpha1.ConditionType, reason v1alpha1.ConditionReason, message string) bool {
	return Set(conds, generation, t, metav1.ConditionTrue, reason, message)
}

// False is Set with status False.
func False(conds *[]metav1.Condition, generation int64, t v1alpha1.ConditionType, reason v1alpha1.ConditionReason, message string) bool {
	return Set(conds, generation, t, metav1.ConditionFalse, reason, message)
}

// Get returns the condition of type t, or nil.
func Get(conds []metav1.Condition, t v1alpha1.ConditionType) *metav1.Condition {
	return meta.FindStatusCondition(conds, string(t))
}

// IsTrue reports whether the condition of type t is True and describes generation.
func IsTrue(conds []metav1.Condition, generation int64, t v1alpha1.ConditionType) bool {
	c := Get(conds, t)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == generation
}

// Mirror copies the status, reason and message of src (a condition of another
// object, e.g. the Programmed verdict of a NodeProxyConfig) into conds as type t,
// with this object's generation, and reports whether anything changed. The
// transition time moves only with the status, as for Set.
func Mirror(conds *[]metav1.Condition, generation int64, t v1alpha1.ConditionType, src metav1.Condition) bool {
	return Set(conds, generation, t, src.Status, v1alpha1.ConditionReason(src.Reason), src.Message)
}

// Aggregate is the condition of type t summarising parts (one condition per
// part, e.g. one Programmed per node or per listener): True when every part is
// True, else the first part that is not, with its reason and message prefixed
// by its name. Empty parts give False with reason empty.
func Aggregate(t v1alpha1.ConditionType, parts map[string]metav1.Condition, empty v1alpha1.ConditionReason, emptyMessage string) metav1.Condition {
	if len(parts) == 0 {
		return metav1.Condition{Type: string(t), Status: metav1.ConditionFalse, Reason: string(empty), Message: emptyMessage}
	}
	names := make([]string, 0, len(parts))
	for n := range parts {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if c := parts[n]; c.Status != metav1.ConditionTrue {
			return metav1.Condition{Type: string(t), Status: c.Status, Reason: c.Reason, Message: n + ": " + c.Message}
		}
	}
	first := parts[names[0]]
	return metav1.Condition{Type: string(t), Status: metav1.ConditionTrue, Reason: first.Reason, Message: first.Message}
}
