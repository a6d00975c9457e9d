package kubectlportico

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// ConfigDumpPath is where the agent serves its config dump (nodeagent/debug.ConfigDumpPath;
// not imported, so that the plugin does not link the agent's xDS server; a test
// checks that the two agree).
const ConfigDumpPath = "/debug/config_dump"

// DefaultAgentSelector selects the node agent's Pods in the install namespace, as
// charts/portico labels them.
const DefaultAgentSelector = "app.kubernetes.io/name=portico,app.kubernetes.io/component=nodeagent"

// DefaultAgentPort is the port of the agent's debug endpoint (its --debug-address).
const DefaultAgentPort = 9880

// dumpOptions say how config-dump reaches an agent.
type dumpOptions struct {
	// address, when set, is the agent's debug endpoint (host:port) reached
	// directly: on the node, or through `kubectl port-forward`.
	address  string
	selector string
	port     int
	timeout  time.Duration
}

// fetchDump returns the node's config dump and says how it was reached.
func fetchDump(ctx context.Context, r *reader, node string, o dumpOptions) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.address != "" {
		body, err := getDirect(ctx, o.address)
		return body, "http://" + o.address + ConfigDumpPath, err
	}
	pod, err := agentPod(ctx, r, node, o.selector)
	if err != nil {
		return nil, "", err
	}
	via := fmt.Sprintf("pod %s/%s port %d through the apiserver's pod proxy", pod.Namespace, pod.Name, o.port)
	body, err := r.kube.CoreV1().Pods(pod.Namespace).ProxyGet("http", pod.Name, strconv.Itoa(o.port), ConfigDumpPath, nil).DoRaw(ctx)
	if err != nil {
		return nil, via, fmt.Errorf("reading %s from %s: %w\n"+
			"The agent listens on 127.0.0.1:%d unless started with --debug-address=$(POD_IP):%d, and only then can the apiserver reach it. "+
			"Otherwise: kubectl port-forward -n %s pod/%s %d, then pass --agent-address 127.0.0.1:%d",
			ConfigDumpPath, via, err, DefaultAgentPort, o.port, pod.Namespace, pod.Name, o.port, o.port)
	}
	return body, via, nil
}

func getDirect(ctx context.Context, addr string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+ConfigDumpPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the agent's debug endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET http://%s%s: %s: %s", addr, ConfigDumpPath, resp.Status, body)
	}
	return body, nil
}

// agentPod is the agent's Pod on node, a running one if there are several (a
// rollout in progress).
func agentPod(ctx context.Context, r *reader, node, selector string) (*corev1.Pod, error) {
	pods, err := r.kube.CoreV1().Pods(r.installNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: selector, FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return nil, err
	}
	if len(pods.Items) == 0 {
		return nil, fmt.Errorf("no agent Pod on node %s in namespace %s with labels %s (see --install-namespace, --agent-selector), "+
			"or reach the agent directly with --agent-address HOST:PORT", node, r.installNamespace, selector)
	}
	slices.SortStableFunc(pods.Items, func(a, b corev1.Pod) int {
		return boolRank(b.Status.Phase == corev1.PodRunning) - boolRank(a.Status.Phase == corev1.PodRunning)
	})
	return &pods.Items[0], nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}
