package conditions

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

func TestSetRecordsGenerationAndKeepsTransitionTime(t *testing.T) {
	var conds []metav1.Condition
	if !True(&conds, 3, v1alpha1.ConditionReady, v1alpha1.ReasonValid, "ok") {
		t.Fatal("first Set reported no change")
	}
	c := Get(conds, v1alpha1.ConditionReady)
	if c == nil || c.ObservedGeneration != 3 || c.Reason != "Valid" || c.Status != metav1.ConditionTrue {
		t.Fatalf("unexpected condition %+v", c)
	}
	// Backdate the transition so a wrongly refreshed time would show.
	past := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	conds[0].LastTransitionTime = past

	if True(&conds, 3, v1alpha1.ConditionReady, v1alpha1.ReasonValid, "ok") {
		t.Fatal("identical Set reported a change")
	}
	if !True(&conds, 4, v1alpha1.ConditionReady, v1alpha1.ReasonValid, "still ok") {
		t.Fatal("new generation and message reported no change")
	}
	if got := Get(conds, v1alpha1.ConditionReady).LastTransitionTime; !got.Equal(&past) {
		t.Fatalf("transition time moved without a status change: %v", got)
	}
	if !IsTrue(conds, 4, v1alpha1.ConditionReady) || IsTrue(conds, 5, v1alpha1.ConditionReady) {
		t.Fatal("IsTrue must hold only for the observed generation")
	}
	if !False(&conds, 5, v1alpha1.ConditionReady, v1alpha1.ReasonInvalid, "bad") {
		t.Fatal("status flip reported no change")
	}
	if got := Get(conds, v1alpha1.ConditionReady).LastTransitionTime; got.Equal(&past) {
		t.Fatal("transition time kept across a status change")
	}
}

func TestMirrorAndAggregate(t *testing.T) {
	var conds []metav1.Condition
	src := metav1.Condition{Status: metav1.ConditionFalse, Reason: "Rejected", Message: "rejected by n2"}
	if !Mirror(&conds, 4, v1alpha1.ConditionProgrammed, src) || conds[0].ObservedGeneration != 4 || conds[0].Reason != "Rejected" {
		t.Fatalf("mirror: %+v", conds)
	}
	lt := conds[0].LastTransitionTime
	src.Message = "rejected by n3"
	if !Mirror(&conds, 4, v1alpha1.ConditionProgrammed, src) || conds[0].LastTransitionTime != lt {
		t.Fatalf("a message change must keep the transition time: %+v", conds[0])
	}
	if Mirror(&conds, 4, v1alpha1.ConditionProgrammed, src) {
		t.Fatal("the same condition changed something")
	}
	agg := Aggregate(v1alpha1.ConditionProgrammed, map[string]metav1.Condition{
		"http":  {Status: metav1.ConditionTrue, Reason: "Programmed", Message: "ok"},
		"https": {Status: metav1.ConditionFalse, Reason: "Pending", Message: "waiting"},
	}, "NoParts", "none")
	if agg.Status != metav1.ConditionFalse || agg.Reason != "Pending" || agg.Message != "https: waiting" {
		t.Fatalf("aggregate: %+v", agg)
	}
	if agg := Aggregate(v1alpha1.ConditionProgrammed, nil, "NoParts", "none"); agg.Reason != "NoParts" || agg.Status != metav1.ConditionFalse {
		t.Fatalf("empty aggregate: %+v", agg)
	}
}
