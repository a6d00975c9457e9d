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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"

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
	testenv.Main(m, testenv.Options{GatewayAPI: true}, func(env *testenv.Env) (func(), error) {
		localEnv = env
		_ = os.Setenv("KUBECONFIG", env.Kubeconfig)
		return local(env)
	})
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
	if localEnv != nil {
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

func ptrTo[T any](v T) *T { return &v }
