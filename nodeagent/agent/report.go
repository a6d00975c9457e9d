package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/nodeagent/render"
	"github.com/portico-dev/portico/nodeagent/xds"
)

// maxReportedProxies is NodeProxyStatus.Proxies' schema limit.
const maxReportedProxies = 16

// Report is everything the NodeProxy status is computed from, gathered by one sync.
type Report struct {
	// Selected are the configs selecting this node: name → resourceVersion.
	Selected map[string]string
	Applied  []render.Applied
	// Rejected are the rejected configs, each with the resourceVersion it was rejected at
	// in RejectedRV (the API type has no field for it; it bounds the watermark).
	Rejected   []v1alpha1.RejectedConfig
	RejectedRV map[string]string

	Redirects, AnnouncedIPs, Listeners, Clusters, Endpoints, FragmentsNotHere int

	// DatapathErr is why the datapath is not ready; nil with DatapathDisabled false means ready.
	DatapathErr      error
	DatapathDisabled bool
	// XDSErr is why the rendered resources could not be served (should not happen: render
	// validates them, but operators must see it if it does).
	XDSErr     error
	XDSVersion string
	Proxies    []xds.ProxyState
	// Interfaces are those the L2 responder can answer on, sorted (nil with L2 disabled).
	Interfaces []string
}

// BuildStatus computes the NodeProxy status from r. It is pure: prev only provides the
// conditions (so transition times survive) and generation their ObservedGeneration.
// LastUpdateTime is left to the writer.
func BuildStatus(prev v1alpha1.NodeProxyStatus, generation int64, r Report) v1alpha1.NodeProxyStatus {
	st := v1alpha1.NodeProxyStatus{Conditions: slices.Clone(prev.Conditions), XDSVersion: r.XDSVersion}

	rejected := slices.Clone(r.Rejected)
	// Listed rejections are the least recently changed ones (lowest resourceVersion), so the
	// watermark can stay truthful below the first one that is not listed.
	slices.SortStableFunc(rejected, func(a, b v1alpha1.RejectedConfig) int {
		return cmp.Or(cmpRV(r.RejectedRV[a.Name], r.RejectedRV[b.Name]), cmp.Compare(a.Name, b.Name))
	})
	st.RejectedCount = int32(len(rejected))
	listed := rejected
	if len(listed) > v1alpha1.MaxReportedRejections {
		listed = listed[:v1alpha1.MaxReportedRejections]
	}
	st.Rejected = slices.Clone(listed)
	st.AppliedResourceVersion = watermark(r, rejected[len(listed):])

	st.Interfaces = slices.Clone(r.Interfaces)
	if len(st.Interfaces) > v1alpha1.MaxReportedInterfaces {
		st.Interfaces = st.Interfaces[:v1alpha1.MaxReportedInterfaces]
	}

	st.Counters = v1alpha1.NodeProxyCounters{
		SelectedConfigs:  int32(len(r.Selected)),
		Redirects:        int32(r.Redirects),
		AnnouncedIPs:     int32(r.AnnouncedIPs),
		Listeners:        int32(r.Listeners),
		Clusters:         int32(r.Clusters),
		Endpoints:        int32(r.Endpoints),
		FragmentsNotHere: int32(r.FragmentsNotHere),
	}

	proxies := slices.Clone(r.Proxies)
	slices.SortFunc(proxies, func(a, b xds.ProxyState) int {
		// Connected proxies first, so that stale ones are the ones cut at the limit.
		if a.Connected != b.Connected {
			if a.Connected {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.NodeID, b.NodeID)
	})
	connected, inSync, nacks := 0, true, []string{}
	for _, p := range proxies {
		ps := v1alpha1.ProxyStatus{ID: p.NodeID}
		for _, ts := range p.Types {
			if ts.Acked != "" && cmpRV(ts.Acked, ps.AckedVersion) > 0 {
				ps.AckedVersion = ts.Acked
			}
			if ts.LastNACK != nil {
				ps.LastNACK = truncate(ts.LastNACK.Message, 1024)
			}
			if p.Connected && ts.Current != "" && !ts.InSync {
				inSync = false
			}
		}
		if p.Connected {
			connected++
			if ps.LastNACK != "" {
				nacks = append(nacks, p.NodeID+": "+ps.LastNACK)
			}
		}
		if len(st.Proxies) < maxReportedProxies {
			st.Proxies = append(st.Proxies, ps)
		}
	}

	gen := generation
	datapathOK := false
	switch {
	case r.DatapathDisabled:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionDatapathReady, v1alpha1.ReasonDisabled, "the datapath is disabled (--disable-datapath); no redirects are programmed")
		datapathOK = true
	case r.DatapathErr != nil:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionDatapathReady, v1alpha1.ReasonFailed, truncate(r.DatapathErr.Error(), 1024))
	default:
		datapathOK = true
		conditions.True(&st.Conditions, gen, v1alpha1.ConditionDatapathReady, v1alpha1.ReasonAttached,
			fmt.Sprintf("%d redirects programmed", r.Redirects))
	}
	switch {
	case connected == 0:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionProxyConnected, v1alpha1.ReasonNotConnected, "no proxy is connected to the xDS server")
	case len(nacks) > 0:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionProxyConnected, v1alpha1.ReasonNACKed, truncate(nacks[0], 1024))
	default:
		conditions.True(&st.Conditions, gen, v1alpha1.ConditionProxyConnected, v1alpha1.ReasonConnected,
			fmt.Sprintf("%d proxies connected", connected))
	}
	// What the proxies acknowledged: the served watermark once every connected proxy
	// is in sync without a NACK, else where it was.
	st.ProgrammedResourceVersion = prev.ProgrammedResourceVersion
	if connected > 0 && inSync && len(nacks) == 0 && r.XDSErr == nil {
		st.ProgrammedResourceVersion = st.AppliedResourceVersion
	}
	switch {
	case r.XDSErr != nil:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionReady, v1alpha1.ReasonFailed, truncate("serving xDS: "+r.XDSErr.Error(), 1024))
	case !datapathOK:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionReady, v1alpha1.ReasonFailed, "the datapath is not ready")
	case connected == 0:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionReady, v1alpha1.ReasonNotConnected, "no proxy is connected")
	case len(nacks) > 0:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionReady, v1alpha1.ReasonNACKed, "a proxy rejected the served configuration")
	case !inSync:
		conditions.False(&st.Conditions, gen, v1alpha1.ConditionReady, v1alpha1.ReasonPending, "a proxy has not acknowledged the served configuration yet")
	default:
		conditions.True(&st.Conditions, gen, v1alpha1.ConditionReady, v1alpha1.ReasonProgrammed, "every selected config is applied or reported as rejected")
	}
	return st
}

// watermark is the highest resourceVersion R such that every selected config at or
// below R is applied or listed in Rejected. Configs still waiting (selected but neither
// applied nor rejected, e.g. held back for proxy ports) and rejections that did not fit
// in the list cap it just below themselves. resourceVersions are compared as integers,
// which is what etcd-backed apiservers produce; the API calls them opaque, so a
// non-numeric one makes the watermark empty rather than wrong.
func watermark(r Report, unlisted []v1alpha1.RejectedConfig) string {
	var top, limit uint64
	limited := false
	capAt := func(v uint64) {
		if !limited || v < limit {
			limit, limited = v, true
		}
	}
	// Every report after every change walks all selected configs: sized once,
	// and each resourceVersion parsed once.
	done := make(map[string]bool, len(r.Applied)+len(r.Rejected))
	for _, a := range r.Applied {
		done[a.Name] = true
	}
	for _, rj := range r.Rejected {
		done[rj.Name] = true
	}
	for _, u := range unlisted {
		v, err := strconv.ParseUint(r.RejectedRV[u.Name], 10, 64)
		if err != nil {
			return ""
		}
		capAt(v)
	}
	versions := make([]uint64, 0, len(r.Selected))
	for name, rv := range r.Selected {
		v, err := strconv.ParseUint(rv, 10, 64)
		if err != nil {
			return ""
		}
		if !done[name] {
			capAt(v)
		}
		versions = append(versions, v)
	}
	for _, v := range versions {
		if (!limited || v < limit) && v > top {
			top = v
		}
	}
	if top == 0 {
		return ""
	}
	return strconv.FormatUint(top, 10)
}

// cmpRV compares resourceVersions (or xDS versions) numerically when both are numbers.
func cmpRV(a, b string) int {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// reporter writes the NodeProxy status at most once per MinInterval, and only when
// something other than LastUpdateTime changed.
type reporter struct {
	c           client.Client
	node        string
	minInterval time.Duration
	log         logr.Logger

	mu      sync.Mutex
	latest  *Report
	ifaces  []string
	kick    chan struct{}
	obj     *v1alpha1.NodeProxy
	written *v1alpha1.NodeProxyStatus
}

func newReporter(c client.Client, node string, minInterval time.Duration, log logr.Logger) *reporter {
	return &reporter{c: c, node: node, minInterval: minInterval, log: log, kick: make(chan struct{}, 1)}
}

// Update hands the reporter a new report; the write happens in Run.
func (w *reporter) Update(r Report) {
	w.mu.Lock()
	w.latest = &r
	w.mu.Unlock()
	w.Poke()
}

// SetInterfaces records the interfaces the L2 responder can answer on; they are
// reported apart from the sync's Report because links change independently of configs.
func (w *reporter) SetInterfaces(names []string) {
	w.mu.Lock()
	w.ifaces = slices.Clone(names)
	w.mu.Unlock()
	w.Poke()
}

// Poke asks for a write with the latest report, e.g. when proxy state changed.
func (w *reporter) Poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run writes until ctx ends. proxies, if set, refreshes Report.Proxies before each write
// so proxy ACKs are reported without a full sync.
func (w *reporter) Run(ctx context.Context, proxies func() []xds.ProxyState) error {
	var last time.Time
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		case <-retry.C:
		}
		if wait := w.minInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		w.mu.Lock()
		r, ifaces := w.latest, w.ifaces
		w.mu.Unlock()
		if r == nil {
			continue
		}
		rep := *r
		rep.Interfaces = ifaces
		if proxies != nil {
			rep.Proxies = proxies()
		}
		wrote, err := w.write(ctx, rep)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.log.Error(err, "writing NodeProxy status", "nodeproxy", w.node)
			retry.Reset(w.minInterval)
		}
		if wrote || err != nil {
			last = time.Now()
		}
	}
}

func (w *reporter) write(ctx context.Context, r Report) (bool, error) {
	if w.obj == nil {
		obj := &v1alpha1.NodeProxy{}
		err := w.c.Get(ctx, client.ObjectKey{Name: w.node}, obj)
		if apierrors.IsNotFound(err) {
			obj = &v1alpha1.NodeProxy{ObjectMeta: metav1.ObjectMeta{Name: w.node}}
			err = w.c.Create(ctx, obj)
		}
		if err != nil {
			return false, err
		}
		w.obj = obj
		w.written = obj.Status.DeepCopy()
	}
	st := BuildStatus(w.obj.Status, w.obj.Generation, r)
	if w.written != nil {
		cmpPrev := w.written.DeepCopy()
		cmpPrev.LastUpdateTime = nil
		if equality.Semantic.DeepEqual(cmpPrev, &st) {
			return false, nil
		}
	}
	now := metav1.Now()
	st.LastUpdateTime = &now
	obj := w.obj.DeepCopy()
	obj.Status = st
	if err := w.c.Status().Update(ctx, obj); err != nil {
		// Re-read next time: someone else (an operator, a previous agent) wrote it.
		w.obj = nil
		return false, err
	}
	w.obj = obj
	w.written = st.DeepCopy()
	return true, nil
}
