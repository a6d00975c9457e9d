//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portico-dev/portico/internal/testenv"
)

// buildController compiles cmd/lbipam-controller once, so that the measured process is
// the shipped binary with its own flags (client QPS included) and its RSS is its own.
func buildController(dir string) (string, error) {
	bin := filepath.Join(dir, "lbipam-controller")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lbipam-controller")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/lbipam-controller: %w\n%s", err, out)
	}
	return bin, nil
}

// controllerProc is one run of the controller binary.
type controllerProc struct {
	cmd        *exec.Cmd
	logPath    string
	metricsURL string
	started    time.Time
	exited     chan struct{}
	exitErr    error
}

func startController(bin, kubeconfig, logPath string, extra []string) (*controllerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// The metrics endpoint stays on (loopback only): its reconcile counters and queue depth
	// are how the bench knows the controller has caught up after a restart.
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--enable-webhook=false",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(port),
		"--health-probe-bind-address=0",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A bench killed half-way must not leave a controller writing to the next run's apiserver.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &controllerProc{cmd: cmd, logPath: logPath, metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p.started = time.Now()
	go func() {
		p.exitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// peakRSSMB is the process's high-water resident set size (VmHWM), which only the kernel
// tracks exactly; sampling VmRSS would miss short peaks such as the initial List.
func (p *controllerProc) peakRSSMB() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// waitLog waits until the controller's log has a line containing substr.
func (p *controllerProc) waitLog(ctx context.Context, substr string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(p.logPath); err == nil && bytes.Contains(b, []byte(substr)) {
			return time.Now(), nil
		}
		select {
		case <-p.exited:
			return time.Time{}, fmt.Errorf("controller exited (%v) before logging %q:\n%s", p.exitErr, substr, p.tail(20))
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("controller did not log %q within %s:\n%s", substr, timeout, p.tail(20))
		}
	}
}

// tail returns the last n lines of the controller's log, for error messages.
func (p *controllerProc) tail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// errorLines counts log lines at error level, to report reconcile failures.
func (p *controllerProc) errorLines() int {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte(`"level":"error"`)) + bytes.Count(b, []byte("\tERROR\t"))
}

// stop sends SIGTERM, as the kubelet would, and waits for a clean exit.
func (p *controllerProc) stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("controller did not exit within %s of SIGTERM; killed", timeout)
	}
}
