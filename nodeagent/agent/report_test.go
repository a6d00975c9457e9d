package agent

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/nodeagent/render"
	"github.com/portico-dev/portico/nodeagent/xds"
)

func TestBuildStatusBoundsRejections(t *testing.T) {
	r := Report{Selected: map[string]string{}, RejectedRV: map[string]string{}}
	// 10,000 rejected configs with resourceVersions 1000..10999, and one applied at 20000.
	for i := range 10000 {
		name := fmt.Sprintf("bad-%05d", i)
		rv := strconv.Itoa(10999 - i) // listed order must follow resourceVersion, not name
		r.Selected[name] = rv
		r.RejectedRV[name] = rv
		r.Rejected = append(r.Rejected, v1alpha1.RejectedConfig{Name: name, Generation: 1, Reason: v1alpha1.ReasonConflict, Message: "conflict"})
	}
	r.Selected["good"] = "20000"
	r.Applied = []render.Applied{{Name: "good", Generation: 1, ResourceVersion: "20000"}}

	st := BuildStatus(v1alpha1.NodeProxyStatus{}, 1, r)
	if len(st.Rejected) != v1alpha1.MaxReportedRejections || st.RejectedCount != 10000 {
		t.Fatalf("rejected listed %d, count %d", len(st.Rejected), st.RejectedCount)
	}
	if st.Rejected[0].Name != "bad-09999" || r.RejectedRV[st.Rejected[63].Name] != "1063" {
		t.Fatalf("listed rejections are not the lowest resourceVersions: first %s, last %s", st.Rejected[0].Name, st.Rejected[63].Name)
	}
	// The first unlisted rejection (rv 1064) caps the watermark, or readers would take it as applied.
	if st.AppliedResourceVersion != "1063" {
		t.Fatalf("watermark %q, want 1063", st.AppliedResourceVersion)
	}
	if st.Counters.SelectedConfigs != 10001 {
		t.Fatalf("selected %d", st.Counters.SelectedConfigs)
	}
}

func TestBuildStatusWatermarkAndConditions(t *testing.T) {
	r := Report{
		Selected:   map[string]string{"a": "10", "b": "12", "c": "15", "held": "14"},
		Applied:    []render.Applied{{Name: "a", ResourceVersion: "10"}, {Name: "c", ResourceVersion: "15"}},
		Rejected:   []v1alpha1.RejectedConfig{{Name: "b", Reason: v1alpha1.ReasonConflict}},
		RejectedRV: map[string]string{"b": "12"},
		XDSVersion: "7",
	}
	st := BuildStatus(v1alpha1.NodeProxyStatus{}, 1, r)
	// "held" (14) is neither applied nor rejected yet: the watermark stays below it.
	if st.AppliedResourceVersion != "12" {
		t.Fatalf("watermark %q, want 12", st.AppliedResourceVersion)
	}
	delete(r.Selected, "held")
	if st = BuildStatus(st, 1, r); st.AppliedResourceVersion != "15" {
		t.Fatalf("watermark %q, want 15", st.AppliedResourceVersion)
	}
	if conditions.IsTrue(st.Conditions, 1, v1alpha1.ConditionReady) || conditions.IsTrue(st.Conditions, 1, v1alpha1.ConditionProxyConnected) {
		t.Fatal("ready or connected without a proxy")
	}
	if st.ProgrammedResourceVersion != "" {
		t.Fatalf("programmed watermark %q without a proxy", st.ProgrammedResourceVersion)
	}
	if !conditions.IsTrue(st.Conditions, 1, v1alpha1.ConditionDatapathReady) {
		t.Fatal("datapath not ready without an error")
	}

	r.Proxies = []xds.ProxyState{{NodeID: "envoy", Connected: true, Types: map[string]xds.TypeState{
		"cds": {Acked: "7", Current: "7", InSync: true},
	}}}
	st = BuildStatus(st, 1, r)
	if !conditions.IsTrue(st.Conditions, 1, v1alpha1.ConditionReady) || len(st.Proxies) != 1 || st.Proxies[0].AckedVersion != "7" {
		t.Fatalf("not ready with an in-sync proxy: %+v", st)
	}
	if st.ProgrammedResourceVersion != "15" {
		t.Fatalf("programmed watermark %q with an in-sync proxy, want 15", st.ProgrammedResourceVersion)
	}
	// A newer config is served but the proxy has not acknowledged its version yet:
	// applied moves, programmed stays.
	r.Selected["d"], r.Applied = "16", append(r.Applied, render.Applied{Name: "d", ResourceVersion: "16"})
	r.Proxies[0].Types["cds"] = xds.TypeState{Acked: "7", Current: "8", InSync: false}
	if st = BuildStatus(st, 1, r); st.AppliedResourceVersion != "16" || st.ProgrammedResourceVersion != "15" {
		t.Fatalf("applied %q programmed %q, want 16 and 15", st.AppliedResourceVersion, st.ProgrammedResourceVersion)
	}
	r.Proxies[0].Types["cds"] = xds.TypeState{Acked: "8", Current: "8", InSync: true}
	if st = BuildStatus(st, 1, r); st.ProgrammedResourceVersion != "16" {
		t.Fatalf("programmed %q once acknowledged, want 16", st.ProgrammedResourceVersion)
	}

	r.DatapathErr = errors.New("loading BPF: operation not permitted")
	st = BuildStatus(st, 1, r)
	c := conditions.Get(st.Conditions, v1alpha1.ConditionDatapathReady)
	if c.Status != "False" || c.Message != r.DatapathErr.Error() || conditions.IsTrue(st.Conditions, 1, v1alpha1.ConditionReady) {
		t.Fatalf("datapath error not reported: %+v", st.Conditions)
	}

	r.DatapathErr = nil
	r.Proxies[0].Types["lds"] = xds.TypeState{Acked: "6", LastNACK: &xds.NACK{Version: "7", Message: "bad listener", At: time.Now()}}
	st = BuildStatus(st, 1, r)
	if c := conditions.Get(st.Conditions, v1alpha1.ConditionProxyConnected); c.Reason != string(v1alpha1.ReasonNACKed) || st.Proxies[0].LastNACK != "bad listener" {
		t.Fatalf("NACK not reported: %+v %+v", c, st.Proxies)
	}
}

// Interfaces are reported as given, bounded by the schema's limit (a node has one veth per pod).
func TestBuildStatusBoundsInterfaces(t *testing.T) {
	var names []string
	for i := range v1alpha1.MaxReportedInterfaces + 10 {
		names = append(names, fmt.Sprintf("veth%04d", i))
	}
	st := BuildStatus(v1alpha1.NodeProxyStatus{}, 1, Report{Interfaces: names})
	if len(st.Interfaces) != v1alpha1.MaxReportedInterfaces || st.Interfaces[0] != "veth0000" {
		t.Fatalf("reported %d interfaces, first %q", len(st.Interfaces), st.Interfaces[0])
	}
	if st := BuildStatus(v1alpha1.NodeProxyStatus{}, 1, Report{}); st.Interfaces != nil {
		t.Fatalf("L2 disabled: want no interfaces, got %q", st.Interfaces)
	}
}
