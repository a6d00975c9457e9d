package testenv

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// APIServerPID finds the kube-apiserver process of this control plane (envtest keeps
// its handle private), so a test can freeze it with SIGSTOP as an outage would.
func (e *Env) APIServerPID() (int, error) {
	u, err := url.Parse(e.Config.Host)
	if err != nil {
		return 0, err
	}
	port := u.Port()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "kube-apiserver" {
			continue
		}
		for i, a := range args {
			if a == "--secure-port="+port || (a == "--secure-port" && i+1 < len(args) && args[i+1] == port) {
				return strconv.Atoi(filepath.Base(d))
			}
		}
	}
	return 0, fmt.Errorf("no kube-apiserver process with --secure-port=%s", port)
}

// FreezeAPIServer stops the apiserver (SIGSTOP): connections stay open and requests
// hang, as in an etcd stall or an apiserver stuck in garbage collection. The returned
// function resumes it (SIGCONT).
func (e *Env) FreezeAPIServer() (resume func() error, err error) {
	pid, err := e.APIServerPID()
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, err
	}
	return func() error { return syscall.Kill(pid, syscall.SIGCONT) }, nil
}

// PIDs are the processes of this control plane (kube-apiserver, its etcd and a
// kube-controller-manager started by StartControllerManager), found by their command
// lines, so that a program which may be killed without cleaning up (the demo) can
// record them for a later clean-up.
func (e *Env) PIDs() []int {
	api, err := e.APIServerPID()
	if err != nil {
		return nil
	}
	pids := []int{api}
	etcdURL := ""
	for _, a := range cmdline(api) {
		if v, ok := strings.CutPrefix(a, "--etcd-servers="); ok {
			etcdURL = v
		}
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == api {
			continue
		}
		args := cmdline(pid)
		if len(args) == 0 {
			continue
		}
		for _, a := range args[1:] {
			switch filepath.Base(args[0]) {
			case "etcd":
				if etcdURL != "" && strings.HasPrefix(a, "--listen-client-urls=") && strings.Contains(a, etcdURL) {
					pids = append(pids, pid)
				}
			case "kube-controller-manager":
				if a == "--kubeconfig="+e.Kubeconfig {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// cmdline is the argument list of a process (nil if it is gone).
func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}
