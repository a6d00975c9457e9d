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
