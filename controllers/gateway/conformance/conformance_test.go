// Package conformance_test runs the official Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, its own tests and names) against
// Portico's gateway controller for the GATEWAY-HTTP, GATEWAY-GRPC and
// GATEWAY-TLS profiles.
//
// Locally it starts a control plane of its own (kube-apiserver, etcd,
// kube-controller-manager, kwok making the echo Pods Ready, node agents whose
// Envoy-like proxies acknowledge what they are served). No Envoy runs there, so
// the tests that send requests are skipped with the suite's own SkipTests, read
// from sends-traffic.txt; every other test must pass. Pointed at a real cluster
// (PORTICO_CONFORMANCE_KUBECONFIG, with Portico and Envoy installed) the same
// test runs the whole suite and writes a ConformanceReport.
//
// It takes minutes, so it runs only when PORTICO_CONFORMANCE is set (CI sets it).
package conformance_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"golang.org/x/net/websocket"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/grpc"
	"sigs.k8s.io/gateway-api/conformance/utils/roundtripper"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"

	"github.com/portico-dev/portico/internal/privileged"
	"github.com/portico-dev/portico/internal/testenv"
)

var localEnv *testenv.Env

func TestMain(m *testing.M) {
	if os.Getenv("PORTICO_CONFORMANCE") == "" && os.Getenv("PORTICO_CONFORMANCE_KUBECONFIG") == "" {
		os.Exit(m.Run()) // TestConformance says why it does not run
	}
	if kc := os.Getenv("PORTICO_CONFORMANCE_KUBECONFIG"); kc != "" {
		_ = os.Setenv("KUBECONFIG", kc)
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // TestConformance says why it does not run
	}
	if os.Getenv(inNetns) == "" {
		os.Exit(isolated())
	}
	testenv.Main(m, testenv.Options{GatewayAPI: true, APIServerArgs: map[string]string{"advertise-address": "10.254.77.1"}}, func(env *testenv.Env) (func(), error) {
		localEnv = env
		_ = os.Setenv("KUBECONFIG", env.Kubeconfig)
		return local(env)
	})
}

const netnsSetup = `set -e
ip link set lo up
ip link add pv0 type veth peer name pv1
ip link set pv0 up
ip link set pv1 up
ip addr add 10.254.77.1/24 dev pv0
ip addr add 10.254.77.2/24 dev pv1
ip route add default via 10.254.77.2 dev pv0
exec "$0" "$@"`

// inNetns marks the test process re-executed in a network namespace of its own.
const inNetns = "PORTICO_CONFORMANCE_NETNS"

// isolated runs this test binary again in a new network namespace and returns
// its exit code. The namespace has loopback, where the local control plane
// lives, and a veth pair whose two ends are both inside it, holding the
// default route (kube-apiserver needs one to pick its advertise address): a
// request a test makes to a Gateway address (192.168.10.x) reaches the other
// end, which does not forward, and is dropped there. Nothing leaves the
// namespace, even if a test that sends traffic is missing from sends-traffic.txt.
func isolated() int {
	cmd := exec.Command("unshare", append([]string{"--net", "--", "sh", "-c", netnsSetup, os.Args[0]}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inNetns+"=1")
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "running the conformance suite in a network namespace of its own:", err)
		return 1
	}
	return 0
}

// skipList reads sends-traffic.txt: one test name per line, each with a
// comment saying that (and how) it sends traffic.
func skipList(t *testing.T) []string {
	f, err := os.Open("sends-traffic.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, why, ok := strings.Cut(line, "#")
		if !ok || !strings.Contains(why, "sends traffic") {
			t.Fatalf("sends-traffic.txt: %q must say why it is skipped (\"# sends traffic: ...\")", line)
		}
		out = append(out, strings.TrimSpace(name))
	}
	return out
}

func TestConformance(t *testing.T) {
	if os.Getenv("PORTICO_CONFORMANCE") == "" && os.Getenv("PORTICO_CONFORMANCE_KUBECONFIG") == "" {
		t.Skip("set PORTICO_CONFORMANCE=1 to run the Gateway API conformance suite on a local control plane (minutes), " +
			"or PORTICO_CONFORMANCE_KUBECONFIG to run all of it on a cluster with Portico and Envoy")
	}
	opts := conformance.DefaultOptions(t)
	opts.GatewayClassName = className
	opts.ConformanceProfiles = []suite.ConformanceProfileName{
		suite.GatewayHTTPConformanceProfileName, suite.GatewayGRPCConformanceProfileName, suite.GatewayTLSConformanceProfileName}
	opts.Implementation = confv1.Implementation{Organization: "portico-dev", Project: "portico",
		URL: "https://github.com/portico-dev/portico", Version: "dev", Contact: []string{"@portico-dev/maintainers"}}
	opts.ReportOutputPath = os.Getenv("PORTICO_CONFORMANCE_REPORT")
	if opts.ReportOutputPath == "" {
		opts.ReportOutputPath = filepath.Join(t.TempDir(), "report.yaml")
	}
	opts.CleanupBaseResources = true
	if localEnv == nil && os.Getenv("PORTICO_CONFORMANCE_KUBECONFIG") == "" {
		privileged.Require(t)
	}
	if localEnv != nil {
		// Nothing may send requests here; a test that tries fails at once.
		opts.RoundTripper, opts.GRPCClient, opts.WebSocketDialer = refuse{}, refuse{}, refuse{}
		opts.SkipTests = append(opts.SkipTests, skipList(t)...)
		opts.UsableNetworkAddresses = []gatewayv1.GatewaySpecAddress{{Type: ptrTo(gatewayv1.IPAddressType), Value: usable}}
		opts.UnusableNetworkAddresses = []gatewayv1.GatewaySpecAddress{{Type: ptrTo(gatewayv1.IPAddressType), Value: unusable}}
	}
	// The suite reads the features from the class once, when it starts.
	deadline := time.Now().Add(time.Minute)
	for {
		gc := &gatewayv1.GatewayClass{}
		err := opts.Client.Get(context.Background(), client.ObjectKey{Name: className}, gc)
		if err == nil && len(gc.Status.SupportedFeatures) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GatewayClass %s lists no supported features after a minute (%v)", className, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	conformance.RunConformanceWithOptions(t, opts)
}

// refuse stands in for the suite's HTTP, gRPC and WebSocket clients on the
// local control plane, where no data plane answers.
type refuse struct{}

var errNoDataPlane = errors.New("no data plane on the local control plane: this test sends traffic and belongs in sends-traffic.txt")

func (refuse) CaptureRoundTrip(roundtripper.Request) (*roundtripper.CapturedRequest, *roundtripper.CapturedResponse, error) {
	return nil, nil, errNoDataPlane
}

func (refuse) SendRPC(*testing.T, string, grpc.ExpectedResponse, time.Duration) (*grpc.Response, error) {
	return nil, errNoDataPlane
}

func (refuse) Close() {}

func (refuse) Dial(string, string, string) (*websocket.Conn, error) { return nil, errNoDataPlane }

func ptrTo[T any](v T) *T { return &v }
