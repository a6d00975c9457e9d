// Package kubectlportico is the `kubectl portico` plugin (cmd/kubectl-portico):
// one command answers "it does not work, where do I look?". It reads the
// objects (with kubectl's own kubeconfig, context and namespace flags, from
// cli-runtime), internal/inspect decides what is wrong and renders it, and the
// exit status tells scripts: 0 when everything is in effect, 1 when something
// is wrong (a rejection, a node lagging, an address nobody announces), 2 when the
// question could not be answered (bad arguments, an object not found, the
// apiserver unreachable).
package kubectlportico

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/internal/inspect"
	"github.com/portico-dev/portico/internal/scheme"
)

// Exit statuses.
const (
	ExitOK       = 0
	ExitProblems = 1
	ExitError    = 2
)

// DefaultInstallNamespace holds the agents' Leases and Pods and the shared Ingress Service.
const DefaultInstallNamespace = "portico-system"

// errProblems: the answer was printed and says something is wrong.
var errProblems = errors.New("problems found")

type options struct {
	flags            *genericclioptions.ConfigFlags
	streams          genericiooptions.IOStreams
	output           string
	installNamespace string
	dump             dumpOptions
	// now is the clock ages are measured with (tests fix it).
	now func() time.Time
}

// Main runs the plugin with args (without the program name) and returns its exit status.
func Main(ctx context.Context, args []string, streams genericiooptions.IOStreams) int {
	o := &options{flags: genericclioptions.NewConfigFlags(true), streams: streams, now: time.Now}
	cmd := o.root()
	cmd.SetArgs(args)
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	err := cmd.ExecuteContext(ctx)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errProblems):
		return ExitProblems
	}
	fmt.Fprintln(streams.ErrOut, "error:", err)
	return ExitError
}

func (o *options) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-portico",
		Short: "Where to look when Portico does not deliver traffic",
		Long: "kubectl portico follows a source object to the nodes and back: the NodeProxyConfigs made from it,\n" +
			"what every node did with them, the addresses and the node answering ARP/NDP for each.\n" +
			"Exit status: 0 all in effect, 1 something is wrong (printed), 2 the question could not be answered.",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl portico"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.flags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "", "output format: table (default), json or yaml")
	root.PersistentFlags().StringVar(&o.installNamespace, "install-namespace", DefaultInstallNamespace, "namespace Portico is installed in (agent Pods and heartbeat Leases, the shared Ingress Service)")

	status := &cobra.Command{
		Use:   "status KIND/NAME",
		Short: "Follow an object down to the nodes: configs, per-node state, redirects, addresses and who announces them",
		Example: "  kubectl portico status ingress/shop -n default\n" +
			"  kubectl portico status service/portico-ingress -n portico-system\n" +
			"  kubectl portico status nodeproxyconfig/ingress-shared\n" +
			"  kubectl portico status gateway/my-gateway -n default\n" +
			"  kubectl portico status httproute/http-app-1 -n default\n" +
			"  kubectl portico status envoyconfig/envoy-lb-listener -n default",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error { return o.status(cmd.Context(), args) },
	}
	nodes := &cobra.Command{
		Use:   "nodes",
		Short: "One line per node: agent ready, heartbeat age, proxy, acknowledged xDS version, counters, rejections",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.nodes(cmd.Context()) },
	}
	dump := &cobra.Command{
		Use:   "config-dump NODE",
		Short: "The xDS resources the node's agent serves (Envoy's config_dump format; private keys redacted)",
		Long: "Reads the agent's debug endpoint (" + ConfigDumpPath + "): through the apiserver's pod proxy to the agent Pod\n" +
			"on the node (needs pods/proxy and an agent started with --debug-address=$(POD_IP):PORT), or directly\n" +
			"with --agent-address (e.g. after kubectl port-forward -n portico-system pod/AGENT 9880).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.configDump(cmd.Context(), args[0]) },
	}
	dump.Flags().StringVar(&o.dump.address, "agent-address", "", "HOST:PORT of the agent's debug endpoint, reached directly instead of through the apiserver")
	dump.Flags().StringVar(&o.dump.selector, "agent-selector", DefaultAgentSelector, "labels of the agent Pods in the install namespace")
	dump.Flags().IntVar(&o.dump.port, "agent-port", DefaultAgentPort, "port of the agent's debug endpoint on its Pod")
	dump.Flags().DurationVar(&o.dump.timeout, "timeout", 30*time.Second, "how long to wait for the agent")
	root.AddCommand(status, nodes, dump)
	return root
}

func (o *options) reader() (*reader, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &reader{c: c, kube: kube, installNamespace: o.installNamespace}, nil
}

func (o *options) status(ctx context.Context, args []string) error {
	kindName, name, _ := strings.Cut(args[0], "/")
	if len(args) == 2 {
		if name != "" {
			return errors.New("give KIND/NAME or KIND NAME, not both")
		}
		name = args[1]
	}
	if name == "" {
		return errors.New("which object? give KIND/NAME, e.g. ingress/shop")
	}
	kind, err := lookupKind(kindName)
	if err != nil {
		return err
	}
	if err := o.checkOutput(); err != nil {
		return err
	}
	r, err := o.reader()
	if err != nil {
		return err
	}
	key := types.NamespacedName{Name: name}
	if kind.namespaced {
		if key.Namespace, _, err = o.flags.ToRawKubeConfigLoader().Namespace(); err != nil {
			return err
		}
	}
	all, err := r.configs(ctx)
	if err != nil {
		return err
	}
	ch, err := kind.chain(ctx, r, key, all)
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("%s: its CRD is not installed in this cluster (Gateway API CRDs come separately: config/gateway-api): %w", kind.name, err)
	}
	if err != nil {
		return err
	}
	nodes, err := r.nodes(ctx)
	if err != nil {
		return err
	}
	st := inspect.BuildStatus(inspect.Inputs{
		Source: ch.source, Configs: ch.configs, LoadBalancers: ch.loadBalancers,
		PublishesAddress: ch.publishes, Published: ch.published,
		Announcers: announcers(all), Nodes: nodes, Problems: ch.problems,
	})
	return o.print(st, st.OK, func(w io.Writer) error { return inspect.WriteStatus(w, st) })
}

func (o *options) nodes(ctx context.Context) error {
	if err := o.checkOutput(); err != nil {
		return err
	}
	r, err := o.reader()
	if err != nil {
		return err
	}
	nodes, err := r.nodes(ctx)
	if err != nil {
		return err
	}
	leases, err := r.leases(ctx)
	if err != nil {
		return err
	}
	ns := inspect.BuildNodes(nodes, leases, o.now())
	return o.print(ns, ns.OK, func(w io.Writer) error { return inspect.WriteNodes(w, ns) })
}

func (o *options) configDump(ctx context.Context, node string) error {
	if err := o.checkOutput(); err != nil {
		return err
	}
	r, err := o.reader()
	if err != nil {
		return err
	}
	raw, via, err := fetchDump(ctx, r, node, o.dump)
	if err != nil {
		return err
	}
	entries, err := inspect.SummarizeConfigDump(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", via, err)
	}
	switch o.output {
	case "json":
		_, err = o.streams.Out.Write(raw)
		return err
	case "yaml":
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			return err
		}
		_, err = o.streams.Out.Write(y)
		return err
	}
	return inspect.WriteConfigDump(o.streams.Out, entries)
}

func (o *options) checkOutput() error {
	switch o.output {
	case "", "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q: use table, json or yaml", o.output)
}

// print writes v in the chosen format and turns a bad answer into errProblems.
func (o *options) print(v any, ok bool, table func(io.Writer) error) error {
	var err error
	switch o.output {
	case "json":
		var b []byte
		if b, err = json.MarshalIndent(v, "", "  "); err == nil {
			_, err = fmt.Fprintf(o.streams.Out, "%s\n", b)
		}
	case "yaml":
		var b []byte
		if b, err = yaml.Marshal(v); err == nil {
			_, err = o.streams.Out.Write(b)
		}
	default:
		err = table(o.streams.Out)
	}
	if err == nil && !ok {
		return errProblems
	}
	return err
}
