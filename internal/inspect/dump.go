package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/cli-runtime/pkg/printers"
)

// DumpEntry is one resource of an agent's config dump (envoy.admin.v3.ConfigDump,
// as nodeagent/debug serves it).
type DumpEntry struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Detail: a listener's address, the number of endpoints of an assignment.
	Detail string `json:"detail,omitempty"`
}

// configDump is the part of Envoy's ConfigDump JSON the summary reads. Only
// names, versions and addresses are read, so the plugin links none of Envoy's
// types and shows any resource the agent serves, known to it or not.
type configDump struct {
	Configs []struct {
		Type      string `json:"@type"`
		Listeners []struct {
			Name   string `json:"name"`
			Active struct {
				Version  string `json:"versionInfo"`
				Listener struct {
					Address struct {
						Socket struct {
							Address string `json:"address"`
							Port    int    `json:"portValue"`
						} `json:"socketAddress"`
					} `json:"address"`
				} `json:"listener"`
			} `json:"activeState"`
		} `json:"dynamicListeners"`
		Clusters []struct {
			Version string `json:"versionInfo"`
			Cluster struct {
				Name string `json:"name"`
			} `json:"cluster"`
		} `json:"dynamicActiveClusters"`
		Routes []struct {
			Version string `json:"versionInfo"`
			Route   struct {
				Name string `json:"name"`
			} `json:"routeConfig"`
		} `json:"dynamicRouteConfigs"`
		Secrets []struct {
			Name    string `json:"name"`
			Version string `json:"versionInfo"`
		} `json:"dynamicActiveSecrets"`
		Endpoints []struct {
			Version string `json:"versionInfo"`
			CLA     struct {
				ClusterName string `json:"clusterName"`
				Endpoints   []struct {
					LB []json.RawMessage `json:"lbEndpoints"`
				} `json:"endpoints"`
			} `json:"endpointConfig"`
		} `json:"dynamicEndpointConfigs"`
	} `json:"configs"`
}

// SummarizeConfigDump lists the resources of a config dump in its order.
func SummarizeConfigDump(raw []byte) ([]DumpEntry, error) {
	var d configDump
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("not an Envoy config dump: %w", err)
	}
	out := []DumpEntry{}
	for _, c := range d.Configs {
		for _, l := range c.Listeners {
			detail := ""
			if s := l.Active.Listener.Address.Socket; s.Address != "" {
				detail = fmt.Sprintf("%s:%d", s.Address, s.Port)
				if strings.Contains(s.Address, ":") {
					detail = fmt.Sprintf("[%s]:%d", s.Address, s.Port)
				}
			}
			out = append(out, DumpEntry{"Listener", l.Name, l.Active.Version, detail})
		}
		for _, cl := range c.Clusters {
			out = append(out, DumpEntry{"Cluster", cl.Cluster.Name, cl.Version, ""})
		}
		for _, r := range c.Routes {
			out = append(out, DumpEntry{"RouteConfiguration", r.Route.Name, r.Version, ""})
		}
		for _, s := range c.Secrets {
			out = append(out, DumpEntry{"Secret", s.Name, s.Version, ""})
		}
		for _, e := range c.Endpoints {
			n := 0
			for _, le := range e.CLA.Endpoints {
				n += len(le.LB)
			}
			out = append(out, DumpEntry{"ClusterLoadAssignment", e.CLA.ClusterName, e.Version, fmt.Sprintf("%d endpoints", n)})
		}
	}
	return out, nil
}

// WriteConfigDump prints the summary of a node's config dump.
func WriteConfigDump(w io.Writer, entries []DumpEntry) error {
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintf(tw, "TYPE\tNAME\tVERSION\tDETAIL\n")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Type, e.Name, orDash(e.Version), orDash(e.Detail))
	}
	return tw.Flush()
}
