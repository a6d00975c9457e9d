package install_test

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/portico-dev/portico/internal/testproc"
)

// buildBinaries builds the cmd/ binaries as the e2e suites do (internal/testproc), once
// per checkout and build.
func buildBinaries(t testing.TB, names ...string) string {
	t.Helper()
	dir, err := testproc.Build("", names...)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// chartArgs are the container's args of a rendered Deployment or DaemonSet, with the
// $(VAR) references the kubelet would expand.
func chartArgs(t testing.TB, workload *unstructured.Unstructured, env map[string]string) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(workload.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("%s %s: %d containers", workload.GetKind(), workload.GetName(), len(containers))
	}
	raw, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	out := make([]string, len(raw))
	for i, a := range raw {
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		out[i] = a
	}
	return out
}

// proc is a binary running for the test, its output collected.
// startProc starts cmd (internal/testproc) and stops it with SIGTERM when the test ends.
func startProc(t testing.TB, name string, cmd *exec.Cmd) *testproc.Proc {
	t.Helper()
	p, err := testproc.Start(name, cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGTERM) })
	return p
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// shortDir is a temporary directory with a short path: Unix socket paths are limited to
// 108 bytes.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ptsa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}
