package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/e2e/framework/local"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/l2probe"
	"github.com/portico-dev/portico/internal/netlab"
	"github.com/portico-dev/portico/internal/standin"
)

// runNodes is the demo with nodes: the e2e suite's local cluster, the samples, and what
// the client on the nodes' segment sees.
func runNodes(ctx context.Context, samples string, wait bool) (err error) {
	if _, err := os.Stat(recordFile()); err == nil {
		fmt.Println("removing what an earlier demo left:")
		if err := removeLeftovers(os.Stdout); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(demoDir(), "run"), 0o700); err != nil {
		return err
	}
	t := &demoT{}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
		fmt.Println("\nremoving the demo's processes, namespaces, links and bpffs mounts ...")
		t.cleanup()
		_ = os.RemoveAll(demoDir())
	}()
	start := time.Now()
	fmt.Println("building a cluster on this machine (e2e/framework/local):")
	c := local.Start(t, local.Options{LabID: labID, Dir: filepath.Join(demoDir(), "run"), Router: standin.Oracle,
		Progress: indent{}, Made: record})
	for _, pid := range c.Env.PIDs() {
		record("pid", fmt.Sprint(pid))
	}
	fmt.Println("  waiting until the webhooks answer and every node's NodeProxy is Ready")
	if err := c.WaitReady(ctx, 90*time.Second); err != nil {
		return err
	}
	fmt.Printf("cluster up after %v\n", time.Since(start).Round(100*time.Millisecond))

	v := viewer{c.Env.Kubeconfig, c.Env.Kubectl}
	if err := v.kubectl(ctx, "apply", "-f", samples); err != nil {
		return err
	}
	fmt.Println("\ncreating Secret default/shop-tls (self-signed) for config/samples/ingress-tls.yaml")
	if err := createTLSSecret(ctx, c.Env.Client, types.NamespacedName{Namespace: "default", Name: "shop-tls"}, "shop.example.com"); err != nil {
		return err
	}
	d := &demo{c: c}
	lbs, err := d.waitAnnounced(ctx)
	if err != nil {
		return err
	}
	if err := v.views(ctx, c.Nodes()[0]); err != nil {
		return err
	}
	if err := d.showARP(ctx, lbs); err != nil {
		return err
	}
	if err := d.showRedirect(ctx); err != nil {
		return err
	}
	if err := d.showFailover(ctx, lbs[0]); err != nil {
		return err
	}
	fmt.Printf("\ndemo done after %v\n", time.Since(start).Round(100*time.Millisecond))
	if wait {
		fmt.Printf("\nrunning; to look around:\n  export KUBECONFIG=%s\n", c.Env.Kubeconfig)
		fmt.Printf("  node namespaces:  %s\n  client namespace: %s   (e.g. ip netns exec %s arping -c1 %s)\n",
			strings.Join(d.namespaces(), " "), c.Client_.Name, c.Client_.Name, lbs[0].ip)
		fmt.Println("Ctrl-C (or `make demo-down` from another shell) removes everything.")
		<-ctx.Done()
	}
	return nil
}

// indent prints the cluster's progress lines under the heading.
type indent struct{}

func (indent) Write(p []byte) (int, error) { return fmt.Print("  " + string(p)) }

type demo struct{ c *local.Cluster }

// lb is a LoadBalancer address and the node its Service's condition names.
type lb struct {
	svc   string
	ip    netip.Addr
	owner string
}

var announcedBy = regexp.MustCompile(`announced by ([^\s,;()]+)`)

// waitAnnounced waits until every LoadBalancer Service has an IPv4 address announced by
// a node, and the Ingress its address, and returns the addresses.
func (d *demo) waitAnnounced(ctx context.Context) ([]lb, error) {
	fmt.Println("\nwaiting until every LoadBalancer address is announced and the Ingress has its address ...")
	var lbs []lb
	var missing string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lbs, missing = d.announced(ctx)
		if missing == "" {
			ing := &networkingv1.Ingress{}
			if err := d.c.Env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "basic-ingress"}, ing); err != nil || len(ing.Status.LoadBalancer.Ingress) == 0 {
				missing = "Ingress default/basic-ingress has no address"
				continue
			}
			return lbs, nil
		}
	}
	return nil, fmt.Errorf("after 60 s: %s", missing)
}

// announced lists the LoadBalancer Services' IPv4 addresses with their announcing
// nodes, or says what is missing.
func (d *demo) announced(ctx context.Context) ([]lb, string) {
	var list corev1.ServiceList
	if err := d.c.Env.Client.List(ctx, &list); err != nil {
		return nil, err.Error()
	}
	var lbs []lb
	for _, s := range list.Items {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		name := s.Namespace + "/" + s.Name
		var ip netip.Addr
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				ip = a
			}
		}
		cond := conditions.Get(s.Status.Conditions, v1alpha1.ConditionL2Announced)
		if !ip.IsValid() || cond == nil || cond.Status != metav1.ConditionTrue {
			return nil, fmt.Sprintf("Service %s has no announced IPv4 address yet", name)
		}
		m := announcedBy.FindStringSubmatch(cond.Message)
		if m == nil {
			return nil, fmt.Sprintf("Service %s: condition names no node: %s", name, cond.Message)
		}
		lbs = append(lbs, lb{svc: name, ip: ip, owner: m[1]})
	}
	if len(lbs) == 0 {
		return nil, "no LoadBalancer Service"
	}
	sort.Slice(lbs, func(i, j int) bool { return lbs[i].ip.Less(lbs[j].ip) })
	return lbs, ""
}

// showARP prints the client's arping for each address and the node whose MAC answered.
func (d *demo) showARP(ctx context.Context, lbs []lb) error {
	fmt.Printf("\n--- who answers ARP: arping from the client namespace %s\n", d.c.Client_.Name)
	for _, l := range lbs {
		var macs []string
		var out string
		for deadline := time.Now().Add(20 * time.Second); ; {
			macs, out = l2probe.Arping(d.c.Client_, l.ip, time.Second)
			if len(macs) == 1 && d.nodeOfMAC(macs[0]) == l.owner || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		name, args := l2probe.Command(netlab.HostInterface, l.ip, time.Second)
		fmt.Printf("\n$ %s %s\n%s", name, strings.Join(args, " "), out)
		if len(macs) != 1 || d.nodeOfMAC(macs[0]) != l.owner {
			return fmt.Errorf("ARP for %s (%s): answers %v, want only %s, the node its condition names", l.ip, l.svc, macs, l.owner)
		}
		fmt.Printf("ARP: %s (Service %s) is answered by %s (%s), the node its L2Announced condition names\n", l.ip, l.svc, l.owner, macs[0])
	}
	return nil
}

// showRedirect sends a request from the client to the Ingress's address: the
// announcing node's eBPF redirect hands the connection to its proxy's listener (the
// Envoy stand-in), which answers where it arrived and which cluster Envoy's routing
// picks for it.
func (d *demo) showRedirect(ctx context.Context) error {
	ing := &networkingv1.Ingress{}
	if err := d.c.Env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "basic-ingress"}, ing); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(ing.Status.LoadBalancer.Ingress[0].IP)
	if err != nil {
		return err
	}
	dst := netip.AddrPortFrom(ip, 80)
	fmt.Printf("\n--- a TCP connection from the client (%s) to Ingress default/basic-ingress at %s: GET /details/1\n",
		d.c.Client_.IPv4.Addr(), dst)
	var a standin.Answer
	var code int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		code, a, err = standin.Get(d.c.Client_, dst, "GET", "/details/1", nil)
		if err == nil && code == 200 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("GET http://%s/details/1 from the client: %w", dst, err)
	}
	if code != 200 {
		return fmt.Errorf("GET http://%s/details/1 from the client: status %d: %s", dst, code, a.Error)
	}
	port := ""
	for _, p := range d.c.Proxy(a.Node).Ports()[a.Listener] {
		port = fmt.Sprint(p.Port())
	}
	fmt.Printf("TCP: client %s -> %s redirected to the proxy on %s (listener %s, proxy port %s; the socket's local address is %s)\n",
		d.c.Client_.IPv4.Addr(), dst, a.Node, a.Listener, port, a.Local)
	fmt.Printf("HTTP: GET /details/1 -> status %d, Envoy's routing picks cluster %s\n", code, a.Cluster)
	return nil
}

// showFailover kills the agent announcing l's address with kill -9 while the client
// sends an ARP request every 2 ms, and prints which node answered next and when.
func (d *demo) showFailover(ctx context.Context, l lb) error {
	fmt.Printf("\n--- failover: kill -9 the node agent on %s, which answers for %s\n", l.owner, l.ip)
	probe, err := l2probe.StartSlots(d.c.Client_, l.ip, 2*time.Millisecond)
	if err != nil {
		return err
	}
	defer probe.Stop()
	ownerMAC := strings.ToLower(d.c.Hosts[l.owner].MAC.String())
	pid := d.c.Procs()["agent-"+l.owner].Cmd.Process.Pid
	start := time.Now()
	d.c.StopAgent(l.owner, syscall.SIGKILL) // returns once it has exited
	fmt.Printf("$ kill -9 %d   # node-agent on %s, at %s\n", pid, l.owner, start.Format("15:04:05.000"))
	mac, at, ok := probe.FirstOther(ownerMAC, start, 30*time.Second)
	if !ok {
		return fmt.Errorf("no other node answered for %s within 30 s of killing the agent on %s", l.ip, l.owner)
	}
	time.Sleep(time.Second) // probe on: nobody else may answer, the old node no more
	probe.Stop()
	st := probe.Stats(at, time.Time{})
	others := []string{}
	for m := range st.First {
		if m != mac {
			others = append(others, d.nodeOfMAC(m))
		}
	}
	fmt.Printf("failover: %s answered by %s (%s) %v after kill -9 of the agent on %s\n",
		l.ip, d.nodeOfMAC(mac), mac, at.Sub(start).Round(time.Millisecond), l.owner)
	fmt.Printf("          in the next second, ARP requests every 2 ms: %d of %d answered, by two nodes: %d, by others than %s: %v\n",
		st.Answered, st.Requests, len(st.Doubles), d.nodeOfMAC(mac), others)
	// The Service's condition follows once the new node reports the address in effect.
	ns, name, _ := strings.Cut(l.svc, "/")
	jsonpath := `jsonpath={range .status.conditions[?(@.type=="L2Announced")]}{.type}={.status} {.reason}: {.message}{"\n"}{end}`
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
		out, _ := d.c.Env.Kubectl(ctx, "get", "service", "-n", ns, name, "-o", jsonpath)
		if strings.Contains(out, "announced by "+d.nodeOfMAC(mac)) && !strings.Contains(out, "not yet in effect") {
			break
		}
	}
	v := viewer{d.c.Env.Kubeconfig, d.c.Env.Kubectl}
	if err := v.kubectl(ctx, "get", "service", "-n", ns, name, "-o", jsonpath); err != nil {
		return err
	}
	fmt.Printf("\nstarting the agent on %s again\n", l.owner)
	d.c.StartAgent(l.owner)
	return nil
}

func (d *demo) nodeOfMAC(mac string) string {
	for name, h := range d.c.Hosts {
		if strings.EqualFold(h.MAC.String(), mac) {
			return name
		}
	}
	return "?" + mac
}

func (d *demo) namespaces() []string {
	var out []string
	for _, n := range d.c.Nodes() {
		out = append(out, d.c.Hosts[n].Name)
	}
	return out
}
