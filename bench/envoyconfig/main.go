//go:build linux

// Command envoyconfig measures the envoyconfig-controller from a cold start on a local
// control plane (real kube-apiserver and etcd from internal/testenv): N EnvoyConfigs
// (each like scenario S6: a listener with a port of its own, a route table splitting
// 90/10, two EDS clusters with outlier detection, two backend Services) exist before
// the controller binary starts; the figure is the time until every one is Accepted
// with its NodeProxyConfig written, and the controller's peak RSS.
//
//	go run ./bench/envoyconfig [-configs 1000] [-- controller flags, e.g. --kube-api-qps=1000]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-dev/portico/apis/v1alpha1"
	"github.com/portico-dev/portico/internal/conditions"
	"github.com/portico-dev/portico/internal/testenv"
)

func main() {
	n := flag.Int("configs", 1000, "EnvoyConfigs to create before the controller starts")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	// Arguments after the flags go to the controller, e.g. -- --kube-api-qps=1000.
	if err := run(*n, *timeout, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(n int, timeout time.Duration, extraArgs []string) error {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer env.Stop()
	dir, err := os.MkdirTemp("", "bench-envoyconfig")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "envoyconfig-controller")
	build := exec.Command("go", "build", "-o", bin, "./cmd/envoyconfig-controller")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := create(ctx, env.Client, n); err != nil {
		return err
	}

	logPath := filepath.Join(dir, "controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	args := append([]string{"--kubeconfig=" + env.Kubeconfig, "--enable-webhook=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=0"}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for {
		accepted, npcs, err := progress(ctx, env.Client)
		if err != nil {
			return err
		}
		if accepted == n && npcs == n {
			break
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("after %s: %d/%d accepted, %d NodeProxyConfigs\n%s", time.Since(start).Round(time.Millisecond), accepted, n, npcs, tail(string(log)))
		case <-time.After(200 * time.Millisecond):
		}
	}
	wall := time.Since(start)
	rss, err := peakRSSMB(cmd.Process.Pid)
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_LOG") != "" {
		log, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, os.Getenv("BENCH_LOG")) {
				fmt.Println(line)
			}
		}
	}
	fmt.Printf("| EnvoyConfigs | cold start to all Accepted + NodeProxyConfigs written | controller peak RSS |\n|---|---|---|\n| %d | %.1f s | %.0f MB |\n",
		n, wall.Seconds(), rss)
	return nil
}

// create makes n configs, 16 at a time.
func create(ctx context.Context, c client.Client, n int) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.Create(ctx, config(i)); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func config(i int) *v1alpha1.EnvoyConfig {
	raw := []string{
		fmt.Sprintf(`{"@type":"type.googleapis.com/envoy.config.listener.v3.Listener","name":"l","address":{"socket_address":{"address":"0.0.0.0","port_value":%d}},"filter_chains":[{"filters":[{"name":"envoy.filters.network.http_connection_manager","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager","stat_prefix":"l","rds":{"route_config_name":"r"},"http_filters":[{"name":"envoy.filters.http.router","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}`, 20000+i),
		`{"@type":"type.googleapis.com/envoy.config.route.v3.RouteConfiguration","name":"r","virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"bench/app-v1","weight":90},{"name":"bench/app-v2","weight":10}]},"retry_policy":{"retry_on":"5xx","num_retries":3,"per_try_timeout":"1s"}}}]}]}`,
		`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"bench/app-v1","connect_timeout":"5s","type":"EDS","outlier_detection":{"split_external_local_origin_errors":true,"consecutive_local_origin_failure":2}}`,
		`{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"bench/app-v2","connect_timeout":"3s","type":"EDS","outlier_detection":{"split_external_local_origin_errors":true,"consecutive_local_origin_failure":2}}`,
	}
	ec := &v1alpha1.EnvoyConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "ec-" + strconv.Itoa(i)}}
	ec.Spec.BackendServices = []v1alpha1.ConfigBackendService{
		{BackendService: v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Name: "app-v1"}}},
		{BackendService: v1alpha1.BackendService{ServiceRef: v1alpha1.ServiceRef{Name: "app-v2"}}},
	}
	for _, r := range raw {
		var res v1alpha1.EnvoyResource
		if err := res.UnmarshalJSON([]byte(r)); err != nil {
			panic(err)
		}
		ec.Spec.Resources = append(ec.Spec.Resources, res)
	}
	return ec
}

func progress(ctx context.Context, c client.Client) (accepted, npcs int, err error) {
	var ecs v1alpha1.EnvoyConfigList
	if err := c.List(ctx, &ecs); err != nil {
		return 0, 0, err
	}
	for _, ec := range ecs.Items {
		if conditions.IsTrue(ec.Status.Conditions, ec.Generation, v1alpha1.ConditionAccepted) {
			accepted++
		}
	}
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("NodeProxyConfigList"))
	if err := c.List(ctx, &list); err != nil {
		return 0, 0, err
	}
	return accepted, len(list.Items), nil
}

func peakRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
