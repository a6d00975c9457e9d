package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/l2probe"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/internal/standin"
)

// KubeconfigCluster is a real cluster where the chart is installed, with Envoy on the
// nodes. The suite reads it through kubectl and the API, and, when this machine is on
// the nodes' segment (PORTICO_E2E_CLIENT_INTERFACE names the interface), asks ARP and
// sends HTTP through Envoy itself. It injects no faults.
type KubeconfigCluster struct {
	path        string
	cl          client.Client
	ns          string
	first, last netip.Addr
	iface       string
}

// Kubeconfig connects to the cluster of the kubeconfig at path. The environment tells
// it what it cannot find out: PORTICO_E2E_NAMESPACE (the install namespace, default
// portico-system), PORTICO_E2E_POOL (first-last address the scenarios' pool may hand
// out on the nodes' segment, default 192.168.10.211-192.168.10.215) and
// PORTICO_E2E_CLIENT_INTERFACE (this machine's interface on that segment).
func Kubeconfig(path string) (*KubeconfigCluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	k := &KubeconfigCluster{path: path, cl: cl, ns: envOr("PORTICO_E2E_NAMESPACE", "portico-system"),
		iface: os.Getenv("PORTICO_E2E_CLIENT_INTERFACE")}
	pool := envOr("PORTICO_E2E_POOL", "192.168.10.211-192.168.10.215")
	a, b, ok := strings.Cut(pool, "-")
	if k.first, err = netip.ParseAddr(a); err == nil && ok {
		k.last, err = netip.ParseAddr(b)
	}
	if err != nil || !ok {
		return nil, fmt.Errorf("PORTICO_E2E_POOL=%q: want first-last", pool)
	}
	return k, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (k *KubeconfigCluster) Provider() string               { return "kubeconfig" }
func (k *KubeconfigCluster) Client() client.Client          { return k.cl }
func (k *KubeconfigCluster) Kubeconfig() string             { return k.path }
func (k *KubeconfigCluster) InstallNamespace() string       { return k.ns }
func (k *KubeconfigCluster) Pool() (netip.Addr, netip.Addr) { return k.first, k.last }
func (k *KubeconfigCluster) PodNodeName() string            { return "" }
func (k *KubeconfigCluster) Proxy(string) *standin.Proxy    { return nil }
func (k *KubeconfigCluster) Faults() Faults                 { return nil }

func (k *KubeconfigCluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", k.path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Nodes are the nodes whose agent reports a NodeProxy.
func (k *KubeconfigCluster) Nodes() []string {
	var nps v1alpha1.NodeProxyList
	if err := k.cl.List(context.Background(), &nps); err != nil {
		return nil
	}
	var out []string
	for _, np := range nps.Items {
		out = append(out, np.Name)
	}
	sort.Strings(out)
	return out
}

// Logs are the last lines of every Portico Pod's log.
func (k *KubeconfigCluster) Logs() map[string]string {
	out, _ := k.Kubectl(context.Background(), "logs", "-n", k.ns, "-l", "app.kubernetes.io/name=portico",
		"--all-containers", "--prefix", "--tail=100")
	return map[string]string{"pods in " + k.ns: out}
}

// Network is this machine on the nodes' segment, when PORTICO_E2E_CLIENT_INTERFACE
// says it is.
func (k *KubeconfigCluster) Network() Network {
	if k.iface == "" {
		return nil
	}
	return &hostNetwork{k: k}
}

type hostNetwork struct{ k *KubeconfigCluster }

func (n *hostNetwork) Arping(ip netip.Addr, timeout time.Duration) ([]string, string) {
	name, args := l2probe.Command(n.k.iface, ip, timeout)
	out, _ := exec.Command(name, args...).CombinedOutput()
	var nodes []string
	for _, m := range l2probe.Answers(ip, string(out)) {
		nodes = append(nodes, n.NodeOfMAC(m))
	}
	return nodes, string(out)
}

func (n *hostNetwork) Dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr.String(), timeout)
}

// podSuffix is what a Deployment adds to its Pods' names.
var podSuffix = regexp.MustCompile(`-[0-9a-f]{6,10}-[0-9a-z]{5}$`)

// Request goes through Envoy to a backend Pod that answers with its name (the suite's
// backends serve their hostname); the backend is the Deployment it belongs to.
func (n *hostNetwork) Request(addr netip.AddrPort, method, path string, header http.Header) (Response, error) {
	req, err := http.NewRequest(method, "http://"+addr.String()+path, nil)
	if err != nil {
		return Response{}, err
	}
	for h, v := range header {
		req.Header[h] = v
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := Response{Code: resp.StatusCode}
	if err != nil || resp.StatusCode != http.StatusOK {
		r.Detail = string(body)
		return r, err
	}
	r.Backend = podSuffix.ReplaceAllString(strings.TrimSpace(string(body)), "")
	return r, nil
}

func (n *hostNetwork) Slots(netip.Addr, time.Duration) (*l2probe.Slots, error) {
	return nil, errors.New("the raw ARP probe needs a lab namespace")
}

// NodeOfMAC: the MAC is shown as it is (a real cluster's node MACs are not known).
func (n *hostNetwork) NodeOfMAC(mac string) string { return "?" + mac }

func (n *hostNetwork) Neighbour(ip netip.Addr) string {
	out, _ := exec.Command("ip", "neigh", "show", ip.String(), "dev", n.k.iface).Output()
	if m := regexp.MustCompile(`lladdr (\S+)`).FindStringSubmatch(string(out)); m != nil {
		return n.NodeOfMAC(strings.ToLower(m[1]))
	}
	return ""
}

func (n *hostNetwork) RouteVia(netip.Addr, string) (func(), error) {
	return nil, errors.New("routes through a chosen node need a lab namespace")
}
