// Package conditions sets status conditions the one way Portico sets them: always with
// the object's generation as ObservedGeneration, typed types and reasons, and the
// transition time kept when only the message changes.
package conditions

import (
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
