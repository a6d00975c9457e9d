package framework

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// dumpViews are what an operator looks at when something does not work: what each
// node was asked to do and did, the conditions of every object a scenario touches,
// and the Events.
var dumpViews = [][]string{
	{"get", "nodeproxies", "-o", "wide"},
	{"get", "nodeproxies", "-o", "yaml"},
	{"get", "nodeproxyconfigs", "-o", "wide"},
	{"get", "nodeproxyconfigs", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}{.metadata.labels}{\"\\t\"}{.status}{\"\\n\"}{end}"},
	{"get", "ippools,l2policy", "-o", "wide"},
	{"get", "services,ingresses", "-A", "-o", "wide"},
	{"get", "services,ingresses,ippools,l2policy", "-A", "-o",
		"jsonpath={range .items[*]}{.kind} {.metadata.namespace}/{.metadata.name}:{\"\\n\"}{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{\"\\n\"}{end}{end}"},
	{"get", "events", "-A", "--sort-by=.lastTimestamp"},
}

// Dump writes the cluster's Portico objects, conditions, Events and the logs of its
// processes to w.
func Dump(ctx context.Context, c Cluster, w io.Writer) {
	views := append([][]string{}, dumpViews...)
	for _, kind := range []string{"gateways", "httproutes", "envoyconfigs", "clusterenvoyconfigs"} {
		if _, err := c.Kubectl(ctx, "get", kind, "-A", "-o", "name"); err == nil {
			views = append(views, []string{"get", kind, "-A", "-o", "yaml"})
		}
	}
	for _, args := range views {
		out, err := c.Kubectl(ctx, args...)
		fmt.Fprintf(w, "\n$ kubectl %s\n%s", strings.Join(args, " "), out)
		if err != nil {
			fmt.Fprintf(w, "(%v)\n", err)
		}
	}
	logs := c.Logs()
	names := make([]string, 0, len(logs))
	for n := range logs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "\n--- logs of %s (last lines)\n%s\n", n, logs[n])
	}
}
