// Package envoykit holds the contracts between the controllers that write
// NodeProxyConfigs and the node agent that serves them: the names both sides
// must spell the same way, and the builders of the Envoy resources every
// producer needs. It is a leaf (it imports no Portico package but the API), so
// that a producer and the agent can never disagree on a name because each kept
// its own copy.
package envoykit

import (
	"cmp"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/apis/v1alpha1"
)

// EDSName is the EDS service name (and the ClusterLoadAssignment's cluster_name)
// of one backend Service port: "<namespace>/<service>:<port>", or
// "<namespace>/<service>" for every port, as Cilium spells them, so that
// EnvoyConfigs written for Cilium keep working.
func EDSName(namespace, service, port string) string {
	if port == "" {
		return namespace + "/" + service
	}
	return namespace + "/" + service + ":" + port
}

// BackendEDSNames are the EDS names the agent serves for a backendServices entry.
func BackendEDSNames(b v1alpha1.BackendService) []string {
	if len(b.Ports) == 0 {
		return []string{EDSName(b.Namespace, b.Name, "")}
	}
	out := make([]string, 0, len(b.Ports))
	for _, p := range b.Ports {
		out = append(out, EDSName(b.Namespace, b.Name, p))
	}
	return out
}

// BackendServices lists the Services (and their ports) a config's clusters use, in
// the one order every producer writes them: the agent serves EDS for exactly these,
// and a stable order keeps an unchanged config byte-identical (no spec write).
func BackendServices(ports map[types.NamespacedName]map[int32]bool) []v1alpha1.BackendService {
	if len(ports) == 0 {
		return nil
	}
	svcs := make([]types.NamespacedName, 0, len(ports))
	for k := range ports {
		svcs = append(svcs, k)
	}
	slices.SortFunc(svcs, func(a, b types.NamespacedName) int { return cmp.Compare(a.String(), b.String()) })
	out := make([]v1alpha1.BackendService, 0, len(svcs))
	for _, k := range svcs {
		nums := make([]int32, 0, len(ports[k]))
		for p := range ports[k] {
			nums = append(nums, p)
		}
		slices.Sort(nums)
		bs := v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Namespace: k.Namespace, Name: k.Name}}
		for _, p := range nums {
			bs.Ports = append(bs.Ports, strconv.Itoa(int(p)))
		}
		out = append(out, bs)
	}
	return out
}
