// Command node-agent runs on every node (DaemonSet): it applies the NodeProxyConfigs that
// select its node as eBPF redirects and xDS for the local Envoy, renews the node's
// heartbeat Lease and reports on the node's NodeProxy.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/portico-dev/portico/internal/l2member"
	"github.com/portico-dev/portico/nodeagent/agent"
)

func main() {
	var (
		cfg     agent.Config
		devices string
		// reportExclude: see agent.DefaultInterfaceReportExclude.
		reportExclude                          string
		portRange                              string
		qps                                    float64
		burst                                  int
		mlBind, mlAdvertise, mlJoin, mlKeyFile string
	)
	// The node name and namespace come from the downward API in the DaemonSet, hence the
	// environment defaults.
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "name of this node (env NODE_NAME; required)")
	flag.StringVar(&cfg.Namespace, "install-namespace", envOr("POD_NAMESPACE", agent.DefaultNamespace), "namespace of the heartbeat Lease (env POD_NAMESPACE)")
	// --kubeconfig is registered by controller-runtime's config package, which also reads
	// KUBECONFIG and falls back to the in-cluster config.
	flag.StringVar(&cfg.PinPath, "bpf-pin-path", envOr("PORTICO_BPF_PIN_PATH", agent.DefaultPinPath), "bpffs directory of the datapath's pinned maps and links")
	flag.StringVar(&cfg.StateDir, "state-dir", envOr("PORTICO_STATE_DIR", agent.DefaultStateDir), "directory (a hostPath) keeping proxy port assignments across restarts")
	flag.StringVar(&cfg.XDSSocket, "xds-socket", envOr("PORTICO_XDS_SOCKET", agent.DefaultXDSSocket), "Unix socket Envoy connects to for ADS")
	flag.StringVar(&cfg.XDSAddress, "xds-address", os.Getenv("PORTICO_XDS_ADDRESS"), "optional loopback host:port to serve ADS on as well (debugging)")
	// Loopback by default: reachable from the node and through `kubectl port-forward`
	// (pods/portforward RBAC); $(POD_IP):9880 also lets the apiserver's pod proxy reach it
	// (pods/proxy RBAC), for `kubectl portico config-dump` without a port-forward.
	flag.StringVar(&cfg.DebugAddress, "debug-address", envOr("PORTICO_DEBUG_ADDRESS", "127.0.0.1:9880"), "host:port of the debug endpoint (GET /debug/config_dump: the xDS resources served, private keys redacted); empty disables it")
	flag.StringVar(&devices, "devices", os.Getenv("PORTICO_DEVICES"), "regular expression of the interfaces to attach the redirect to (default: every up non-loopback interface with an address)")
	flag.StringVar(&reportExclude, "interface-report-exclude", envOr("PORTICO_INTERFACE_REPORT_EXCLUDE", agent.DefaultInterfaceReportExclude), "regular expression of interfaces (pod veths, tunnels) left out of NodeProxy status.interfaces, which L2 eligibility is decided on; empty reports every interface")
	flag.StringVar(&portRange, "proxy-port-range", envOr("PORTICO_PROXY_PORT_RANGE", fmt.Sprintf("%d-%d", agent.DefaultProxyPortMin, agent.DefaultProxyPortMax)), "range of the proxy ports given to redirected Envoy listeners")
	// L2 liveness runs between the agents over memberlist (nodeagent/membership); the
	// heartbeat Lease is then written once, to publish this agent's memberlist address.
	flag.StringVar(&mlBind, "memberlist-bind-address", envOr("PORTICO_MEMBERLIST_BIND_ADDRESS", fmt.Sprintf(":%d", l2member.DefaultPort)), "host:port of L2 liveness between the agents (memberlist, UDP and TCP; open it between the nodes); empty falls back to the heartbeat Lease (failover in tens of seconds)")
	flag.StringVar(&mlAdvertise, "memberlist-advertise-address", os.Getenv("PORTICO_MEMBERLIST_ADVERTISE_ADDRESS"), "host:port the other agents reach this one at (default: the bind address, or the node's first private address when it binds to all)")
	flag.StringVar(&mlJoin, "memberlist-join", os.Getenv("PORTICO_MEMBERLIST_JOIN"), "comma-separated extra seeds to join (host or host:port; a DNS name may resolve to several agents); the agents also find each other through the address each publishes on its heartbeat Lease")
	flag.StringVar(&mlKeyFile, "memberlist-secret-key-file", os.Getenv("PORTICO_MEMBERLIST_SECRET_KEY_FILE"), "file holding a 16, 24 or 32 byte key (raw or base64) encrypting memberlist traffic; the same on every agent and the L2 controller")
	flag.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 0, "how often the heartbeat Lease is renewed (default: not renewed with memberlist, 10s without)")
	flag.DurationVar(&cfg.HeartbeatDuration, "heartbeat-duration", agent.DefaultHeartbeatDuration, "heartbeat Lease duration without memberlist (published rounded up to whole seconds); the node fences itself after this long without a renewal")
	flag.Func("redirect-map-size", "redirect map capacity per address family for a fresh bpffs pin (default 65536; a pinned map keeps its size); configs beyond it are rejected newest first", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		cfg.RedirectMapSize = uint32(n)
		return err
	})
	flag.BoolVar(&cfg.DisableDatapath, "disable-datapath", false, "serve xDS only, without eBPF redirects (no root needed)")
	flag.BoolVar(&cfg.DisableL2, "disable-l2", false, "do not answer ARP/NDP for the LoadBalancer IPs the L2 controller assigns to this node")
	flag.StringVar(&cfg.MetricsAddr, "metrics-bind-address", "0", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.StringVar(&cfg.ProbeAddr, "health-probe-bind-address", ":9879", "address of /healthz and /readyz (empty disables them)")
	// Each agent mostly watches: writes are its Lease (5/s) and at most one NodeProxy
	// status per second, so client-go's defaults (5 QPS) would only throttle the status.
	flag.Float64Var(&qps, "kube-api-qps", 20, "queries per second to the apiserver (the heartbeat has its own budget)")
	flag.IntVar(&burst, "kube-api-burst", 40, "burst of queries to the apiserver")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("node-agent")
	cfg.Log = log

	fail := func(err error, msg string) {
		log.Error(err, msg)
		os.Exit(1)
	}
	if cfg.NodeName == "" {
		fail(fmt.Errorf("--node-name (or NODE_NAME) is required"), "invalid flags")
	}
	if devices != "" {
		re, err := regexp.Compile(devices)
		if err != nil {
			fail(err, "invalid --devices")
		}
		cfg.Devices = re
	}
	if reportExclude != "" {
		re, err := regexp.Compile(reportExclude)
		if err != nil {
			fail(err, "invalid --interface-report-exclude")
		}
		cfg.InterfaceReportExclude = re
	}
	lo, hi, err := parsePortRange(portRange)
	if err != nil {
		fail(err, "invalid --proxy-port-range")
	}
	cfg.ProxyPortMin, cfg.ProxyPortMax = lo, hi

	if mlBind != "" {
		key, err := l2member.ReadKey(mlKeyFile)
		if err != nil {
			fail(err, "invalid --memberlist-secret-key-file")
		}
		cfg.Memberlist = &agent.MemberlistConfig{Bind: mlBind, Advertise: mlAdvertise, SecretKey: key, Join: splitList(mlJoin)}
	}

	rc, err := config.GetConfig()
	if err != nil {
		fail(err, "loading the kubeconfig")
	}
	rc.QPS, rc.Burst = float32(qps), burst
	cfg.RestConfig = rc

	if err := agent.Run(ctrl.SetupSignalHandler(), cfg); err != nil {
		fail(err, "running the node agent")
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parsePortRange(s string) (uint16, uint16, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want LOW-HIGH", s)
	}
	lo, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	hi, err := strconv.ParseUint(b, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	if lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("%q: want 1 <= LOW <= HIGH", s)
	}
	return uint16(lo), uint16(hi), nil
}
