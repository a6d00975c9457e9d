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
	metricsAddr := freeAddr(b)
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
	// PORTICO_BENCH_LOG=<file> keeps the binary's log and its GC trace (the
	// heap at every collection: when the peak comes, and what was live then).
	if f := os.Getenv("PORTICO_BENCH_LOG"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			return 0, 0, err
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
	}
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
	// Then the status loop judges every config for the first time in this
	// process: part of a restart, and of its peak.
	if err := statusQuiet(ctx, metricsAddr); err != nil {
		return 0, 0, err
	}
	// The path measured is a restart over an unchanged world: every config
	// is found in place. A binary that rewrote them (its cache's copy no
	// longer compared equal) would be measured doing something else.
	for _, method := range []string{"PATCH", "POST"} {
		switch n := requests(metricsAddr, method); {
		case n < 0:
			return 0, 0, fmt.Errorf("could not read the binary's metrics at %s", metricsAddr)
		case n > 0:
			// Status patches count too: none is due either, the in-process
			// controller wrote the same statuses; and nothing is created, not
			// even an Event: every verdict is the one the statuses already say.
			return 0, 0, fmt.Errorf("the binary sent %d %s requests on its first passes over configs already in place", n, method)
		}
	}
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

// requests is the number of requests of method the controller's client sent
// (-1: the metrics could not be read).
func requests(addr, method string) int {
	n := 0
	if !metricLines(addr, func(line string) {
		if strings.HasPrefix(line, "rest_client_requests_total{") && strings.Contains(line, `method="`+method+`"`) {
			n += int(value(line))
		}
	}) {
		return -1
	}
	return n
}

// statusQuiet waits until the status loop has passed and then run no pass for
// two seconds (each pass is at most MinInterval after the last event).
func statusQuiet(ctx context.Context, addr string) error {
	count := func() float64 {
		n := 0.0
		metricLines(addr, func(line string) {
			if strings.HasPrefix(line, "controller_runtime_reconcile_total{") && strings.Contains(line, `controller="gateway-status"`) {
				n += value(line)
			}
		})
		return n
	}
	for last := -1.0; ; {
		n := count()
		if n > 0 && n == last {
			return nil
		}
		last = n
		select {
		case <-ctx.Done():
			return fmt.Errorf("the status loop was not quiet within 10 minutes")
		case <-time.After(2 * time.Second):
		}
	}
}

// passed reports whether the controller's metrics count a successful gateway pass.
func passed(addr string) bool {
	ok := false
	metricLines(addr, func(line string) {
		if strings.HasPrefix(line, "controller_runtime_reconcile_total{") && strings.Contains(line, `controller="gateway"`) &&
			strings.Contains(line, `result="success"`) && value(line) > 0 {
			ok = true
		}
	})
	return ok
}

// metricLines calls f with each line of the metrics at addr.
func metricLines(addr string, f func(string)) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
	return sc.Err() == nil
}

// value is a sample line's value (0 if it has none).
func value(line string) float64 {
	f := strings.Fields(line)
	v, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return v
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
