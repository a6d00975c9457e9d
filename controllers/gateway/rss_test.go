package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-dev/portico/internal/testenv"
)

// BenchmarkControllerPeakRSS is issue 12's memory figure: the gateway-controller
// binary, run as its own process against the control plane holding the
// 10,000 routes of BenchmarkOneRouteChange, until its first full pass has
// succeeded; its peak resident set (VmHWM) is reported. It writes nothing the
// in-process controller has not written already (same translation), so the two
// do not fight.
//
//	go test ./controllers/gateway/ -run '^$' -bench ControllerPeakRSS -benchtime 1x -timeout 60m
func BenchmarkControllerPeakRSS(b *testing.B) {
	rssOnce.Do(func() { rssHWM, rssFirst, rssErr = measureRSS(b) })
	if rssErr != nil {
		b.Fatal(rssErr)
	}
	b.ReportMetric(float64(rssHWM)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(rssFirst.Seconds(), "first-pass-s")
}

// The binary is measured once per process, whatever b.N.
var (
	rssOnce  sync.Once
	rssHWM   int64
	rssFirst time.Duration
	rssErr   error
)

func measureRSS(b *testing.B) (int64, time.Duration, error) {
	setupScale(b)
	bin := filepath.Join(b.TempDir(), "gateway-controller")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gateway-controller")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	metricsAddr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=0", "--enable-webhook=false"}
	// PORTICO_BENCH_HEAPPROFILE=<file> also saves the binary's heap profile
	// after its first pass, to see where the memory goes.
	heapFile := os.Getenv("PORTICO_BENCH_HEAPPROFILE")
	pprofAddr := ""
	if heapFile != "" {
		pprofAddr = freeAddr(b)
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	for !passed(metricsAddr) {
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("no successful gateway pass within 10 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	first := time.Since(start)
	hwm, err := vmHWM(cmd.Process.Pid)
	if err == nil && heapFile != "" {
		err = saveHeap(pprofAddr, heapFile)
	}
	return hwm, first, err
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func saveHeap(addr, file string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	_, err = io.Copy(out, resp.Body)
	return err
}

// passed reports whether the controller's metrics count a successful gateway pass.
func passed(addr string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "controller_runtime_reconcile_total{") && strings.Contains(line, `controller="gateway"`) && strings.Contains(line, `result="success"`) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil && v > 0 {
				return true
			}
		}
	}
	return false
}

func vmHWM(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}
