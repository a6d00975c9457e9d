package xds

import (
	"fmt"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/portico-dev/portico/internal/xdsres"
)

// routeTables serves RDS from a linear cache rather than the snapshot: a
// snapshot cache builds every state-of-the-world response afresh, marshalling
// every route table it serves, and the proxy decodes every one of them, so one
// route changed among 100 Gateways of 400 routes each cost 40,000 routes on
// each side. RDS is not a full-state type (the xDS protocol lets a response
// carry only the tables that changed), and the linear cache keeps each table's
// marshalled form until it changes: one changed table costs that table.
//
// The linear cache has its own version counter, bumped once per UpdateResources
// call; routeTables mirrors it (TestRouteWireVersionsMirrorTheCache holds the
// two together) to tell when a proxy holds every served table. Its versions are
// "<VersionBase>.<counter>" so that an ACK sent to an earlier agent process is
// never taken for one of this process.
type routeTables struct {
	cache  *cachev3.LinearCache
	prefix string
	served map[string]*routev3.RouteConfiguration
	// version is the snapshot-numbered version of the last change (Versions["routes"]).
	version uint64
	// wire is the linear cache's counter; synced is its value after the last call that
	// updated a table. A proxy that ACKed synced or later holds every served table: a
	// call that only removes tables sends nothing (state of the world cannot say
	// "removed"), so it must not make the proxies look behind.
	wire, synced uint64
	// numbered maps recent wire counters to snapshot-numbered versions, so a proxy's
	// ACKed RDS version is reported in the numbering of xdsVersion.
	numbered map[uint64]uint64
}

// maxNumbered bounds numbered: a proxy more than this many route changes behind
// reports no RDS version rather than a wrong one.
const maxNumbered = 256

func newRouteTables(base uint64) *routeTables {
	prefix := strconv.FormatUint(base, 10) + "."
	return &routeTables{
		cache:    cachev3.NewLinearCache(resourcev3.RouteType, cachev3.WithVersionPrefix(prefix)),
		prefix:   prefix,
		served:   map[string]*routev3.RouteConfiguration{},
		numbered: map[uint64]uint64{},
	}
}

// diff returns the tables of next that are new or changed, and the names of the
// served tables next does not have. A table passed before (the same pointer) is
// compared by identity first (xdsres.Equal).
func (t *routeTables) diff(next []*routev3.RouteConfiguration) (update map[string]types.Resource, remove []string) {
	update = map[string]types.Resource{}
	names := make(map[string]bool, len(next))
	for _, rc := range next {
		names[rc.GetName()] = true
		if prev, ok := t.served[rc.GetName()]; ok && xdsres.Equal(prev, rc) {
			continue
		}
		update[rc.GetName()] = rc
	}
	for name := range t.served {
		if !names[name] {
			remove = append(remove, name)
		}
	}
	return update, remove
}

// apply serves the changes diff found, as the snapshot-numbered version.
func (t *routeTables) apply(update map[string]types.Resource, remove []string, version uint64) error {
	if len(update) == 0 && len(remove) == 0 {
		return nil
	}
	err := t.cache.UpdateResources(update, remove)
	// The cache counts the call whatever notifying the watches returned.
	t.wire++
	for name, r := range update {
		t.served[name] = r.(*routev3.RouteConfiguration)
	}
	for _, name := range remove {
		delete(t.served, name)
	}
	t.version = version
	if len(update) > 0 {
		t.synced = t.wire
	}
	t.numbered[t.wire] = version
	delete(t.numbered, t.wire-maxNumbered)
	if err != nil {
		return fmt.Errorf("serving route tables: %w", err)
	}
	return nil
}

// current is the RDS version a proxy must have ACKed (or passed) to hold every
// served table; "" before any table was served.
func (t *routeTables) current() string {
	if t.synced == 0 {
		return ""
	}
	return t.prefix + strconv.FormatUint(t.synced, 10)
}

// counter parses a version this process's cache sent.
func (t *routeTables) counter(v string) (uint64, bool) {
	rest, ok := strings.CutPrefix(v, t.prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// holds reports whether a proxy that ACKed acked holds every served table.
func (t *routeTables) holds(acked string) bool {
	n, ok := t.counter(acked)
	return ok && t.synced > 0 && n >= t.synced
}

// numberedAs is v in the snapshot numbering, "" if v is not a recent version of
// this process.
func (t *routeTables) numberedAs(v string) string {
	n, ok := t.counter(v)
	if !ok {
		return ""
	}
	if num, known := t.numbered[n]; known {
		return strconv.FormatUint(num, 10)
	}
	return ""
}
