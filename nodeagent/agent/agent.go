// Package agent is the node agent process: it selects the NodeProxyConfigs that apply to
// its node, renders them (nodeagent/render), programs the eBPF redirect map
// (nodeagent/bpf), serves the result to the local Envoy (nodeagent/xds) with endpoints
// from the backend Services' EndpointSlices, renews the node's heartbeat Lease, and
// reports what it did on the node's NodeProxy.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/scheme"
	"github.com/portico-dev/portico/nodeagent/debug"
	"github.com/portico-dev/portico/nodeagent/secrets"
	"github.com/portico-dev/portico/nodeagent/xds"
)

// Defaults of Config fields left zero.
const (
	DefaultPinPath        = "/sys/fs/bpf/portico"
	DefaultStateDir       = "/var/lib/portico"
	DefaultXDSSocket      = "/var/run/portico/xds.sock"
	DefaultNamespace      = "portico-system"
	DefaultProxyPortMin   = 15000
	DefaultProxyPortMax   = 15999
	DefaultDebounce       = 20 * time.Millisecond
	DefaultDeviceRescan   = 5 * time.Second
	DefaultReportInterval = time.Second
)

// Config is everything Run needs; cmd/node-agent fills it from flags.
type Config struct {
	// NodeName is the node this agent runs on (required).
	NodeName string
	// Namespace holds the heartbeat Lease (the install namespace).
	Namespace  string
	RestConfig *rest.Config
	// PinPath is the bpffs directory of the datapath's maps and links.
	PinPath string
	// StateDir keeps the proxy port assignments. It is not under PinPath because bpffs
	// only holds BPF objects, not regular files; it must survive agent restarts (a
	// hostPath), or listeners get new ports and every redirect is rewritten.
	StateDir string
	// XDSSocket is the Unix socket Envoy connects to; XDSAddress optionally adds a loopback TCP address.
	XDSSocket  string
	XDSAddress string
	// Devices selects the interfaces the redirect program is attached to; nil means every
	// up, non-loopback interface with an address.
	Devices *regexp.Regexp
	// InterfaceReportExclude hides interfaces from NodeProxy status.interfaces (see
	// DefaultInterfaceReportExclude); nil reports every interface the responder can use.
	InterfaceReportExclude *regexp.Regexp
	// ProxyPortMin and ProxyPortMax bound the proxy ports of redirected listeners.
	ProxyPortMin, ProxyPortMax uint16
	// HeartbeatInterval and HeartbeatDuration time the Lease (see Heartbeat). Zero
	// interval: 10 s when the Lease is the L2 liveness source, else written once.
	HeartbeatInterval, HeartbeatDuration time.Duration
	// Memberlist runs L2 liveness between the agents; nil falls back to the Lease.
	Memberlist *MemberlistConfig
	// RedirectMapSize is the redirect map capacity per address family for a fresh
	// pin path (zero: 65,536); a map already pinned keeps its size. Configs beyond it
	// are rejected, newest first, with reason RedirectCapacity.
	RedirectMapSize uint32
	// DisableDatapath runs xDS only, e.g. without root or in tests; NodeProxy says so.
	DisableDatapath bool
	// DisableL2 turns off the ARP/NDP responder (it needs CAP_NET_RAW).
	DisableL2 bool
	// DeviceRescan is how often new interfaces are looked for (and a failed datapath retried).
	DeviceRescan time.Duration
	// Debounce is the minimum time between two syncs: the watch events arriving
	// within it are coalesced into one render, while a change after a quiet spell is
	// rendered at once.
	Debounce time.Duration
	// ReportInterval is the minimum time between two NodeProxy status writes.
	ReportInterval time.Duration
	// DebugAddress serves the debug endpoint (nodeagent/debug: the xDS resources being
	// served, as Envoy's config_dump) on this host:port; "" disables it.
	DebugAddress string
	// MetricsAddr and ProbeAddr are the manager's endpoints ("0" disables metrics, "" probes).
	MetricsAddr, ProbeAddr string
	Log                    logr.Logger
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" {
		return errors.New("agent: the node name is required")
	}
	if c.RestConfig == nil {
		return errors.New("agent: RestConfig is required")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Namespace, DefaultNamespace)
	def(&c.PinPath, DefaultPinPath)
	def(&c.StateDir, DefaultStateDir)
	def(&c.XDSSocket, DefaultXDSSocket)
	def(&c.MetricsAddr, "0")
	if c.ProxyPortMin == 0 && c.ProxyPortMax == 0 {
		c.ProxyPortMin, c.ProxyPortMax = DefaultProxyPortMin, DefaultProxyPortMax
	}
	durDef := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
		if c.Memberlist != nil {
			c.HeartbeatInterval = -1 // liveness is memberlist's: publish the address once
		}
	}
	durDef(&c.HeartbeatDuration, DefaultHeartbeatDuration)
	durDef(&c.DeviceRescan, DefaultDeviceRescan)
	durDef(&c.Debounce, DefaultDebounce)
	durDef(&c.ReportInterval, DefaultReportInterval)
	return nil
}

// Run runs the agent until ctx ends (SIGTERM), then releases the heartbeat Lease and
// stops serving xDS. Pinned datapath state stays, so traffic keeps flowing across restarts.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	registerMetrics()
	log := cfg.Log.WithValues("node", cfg.NodeName)

	xsrv, err := xds.New(xds.Options{SocketPath: cfg.XDSSocket, TCPAddress: cfg.XDSAddress, VersionBase: uint64(time.Now().UnixMilli())})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.XDSSocket), 0o755); err != nil {
		return fmt.Errorf("agent: creating the xDS socket directory: %w", err)
	}
	// Listen now so a bad socket path fails the start rather than a background runnable.
	if err := xsrv.Listen(); err != nil {
		return err
	}

	ports, err := loadPortsOrReset(filepath.Join(cfg.StateDir, PortStateFile), cfg, log)
	if err != nil {
		return err
	}

	mgr, err := ctrl.NewManager(cfg.RestConfig, ctrl.Options{
		Scheme:                 scheme.New(),
		Metrics:                metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress: cfg.ProbeAddr,
		// Known kinds are mapped without discovery: an agent restarted while the
		// apiserver is unreachable must get past creating its manager to rejoin its
		// peers and resume answering (the cache's setup maps every ByObject kind).
		MapperProvider: staticFirstMapper,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Only this node's labels matter; watching every Node would cost each agent
			// O(nodes) memory and events.
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", cfg.NodeName)},
		}},
	})
	if err != nil {
		return fmt.Errorf("agent: creating the manager: %w", err)
	}
	if cfg.ProbeAddr != "" {
		_ = mgr.AddHealthzCheck("healthz", healthz.Ping)
		_ = mgr.AddReadyzCheck("readyz", healthz.Ping)
	}

	hbConfig := rest.CopyConfig(cfg.RestConfig)
	// A client of its own, so that a retry never waits behind the limiter of the
	// manager's client and fences the node.
	hbConfig.QPS, hbConfig.Burst = 5, 20
	cs, err := kubernetes.NewForConfig(hbConfig)
	if err != nil {
		return fmt.Errorf("agent: heartbeat client: %w", err)
	}
	hb, err := NewHeartbeat(cs.CoordinationV1().Leases(cfg.Namespace), cfg.NodeName,
		cfg.HeartbeatInterval, cfg.HeartbeatDuration, log.WithName("heartbeat"))
	if err != nil {
		return err
	}

	// NodeProxy is written without a cache: the agent only ever touches its own, and a
	// cached client would watch every node's.
	direct, err := client.New(cfg.RestConfig, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return fmt.Errorf("agent: creating a client: %w", err)
	}
	rep := newReporter(direct, cfg.NodeName, cfg.ReportInterval, log.WithName("report"))
	kube, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return fmt.Errorf("agent: creating a client: %w", err)
	}

	a := &agent{
		cfg:     cfg,
		log:     log,
		cache:   mgr.GetCache(),
		xds:     xsrv,
		ports:   ports,
		report:  rep,
		trigger: make(chan struct{}, 1),
	}
	// A Secret read, changed or deleted changes what render serves: same as a config change.
	a.secrets = secrets.NewWatcher(kube, func() { a.kick(true) })
	defer a.secrets.Stop()
	if !cfg.DisableDatapath {
		a.dp = newDatapath(cfg.PinPath, cfg.Devices, cfg.RedirectMapSize)
		defer a.dp.close()
	}
	runnables := []manager.Runnable{}
	if !cfg.DisableL2 {
		l2r, err := setupL2(cfg, a, hb, cs.CoordinationV1().Leases(cfg.Namespace), mgr.GetCache(), mgr.GetAPIReader(), log)
		if err != nil {
			return err
		}
		runnables = append(runnables, l2r...)
		runnables = append(runnables, manager.RunnableFunc(func(ctx context.Context) error {
			return a.l2.watchInterfaces(ctx, cfg.DeviceRescan, log.WithName("interfaces"), func(names []string) {
				rep.SetInterfaces(reportedInterfaces(names, cfg.InterfaceReportExclude))
			})
		}))
	}

	if cfg.DebugAddress != "" {
		runnables = append(runnables, manager.RunnableFunc(func(ctx context.Context) error {
			return debug.Serve(ctx, cfg.DebugAddress, xsrv, log.WithName("debug"))
		}))
	}
	for _, r := range append(runnables,
		xsrv,
		// The heartbeat starts once the caches have synced: a live heartbeat makes the L2
		// controller move addresses here at once, and until its first sync this agent
		// could not answer for them (a restart would leave its share unanswered for the
		// time of a full list of NodeProxyConfigs, Services and EndpointSlices).
		manager.RunnableFunc(func(ctx context.Context) error {
			// The informers the sync loop waits for (GetInformer blocks until synced;
			// WaitForCacheSync would not wait for those the loop has not requested yet).
			for _, obj := range []client.Object{&v1alpha1.NodeProxyConfig{}, &corev1.Node{}, &discoveryv1.EndpointSlice{}, &corev1.Service{}} {
				if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("agent: waiting for %T before the heartbeat: %w", obj, err)
				}
			}
			return hb.Run(ctx)
		}),
		manager.RunnableFunc(func(ctx context.Context) error { return rep.Run(ctx, xsrv.Proxies) }),
		manager.RunnableFunc(a.run),
	) {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	log.Info("starting node agent", "xdsSocket", cfg.XDSSocket, "pinPath", cfg.PinPath,
		"datapath", !cfg.DisableDatapath, "proxyPorts", fmt.Sprintf("%d-%d", cfg.ProxyPortMin, cfg.ProxyPortMax))
	return mgr.Start(ctx)
}

// loadPortsOrReset loads the port state; a corrupt file is moved aside rather than
// keeping the agent down for ever (listeners then get fresh ports, which Envoy and the
// redirect map follow on the next sync).
func loadPortsOrReset(path string, cfg Config, log logr.Logger) (*Ports, error) {
	p, err := LoadPorts(path, cfg.ProxyPortMin, cfg.ProxyPortMax, DefaultPortHold)
	if err == nil {
		return p, nil
	}
	if _, statErr := os.Stat(path); statErr != nil {
		return nil, err
	}
	log.Error(err, "proxy port state unreadable; moving it aside and starting afresh", "path", path)
	if rerr := os.Rename(path, path+".corrupt"); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	return LoadPorts(path, cfg.ProxyPortMin, cfg.ProxyPortMax, DefaultPortHold)
}

// serviceNameLabel is the EndpointSlice label naming the Service a slice belongs to.
const serviceNameLabel = discoveryv1.LabelServiceName
