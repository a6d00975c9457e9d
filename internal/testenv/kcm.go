package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// StartControllerManager runs kube-controller-manager (from the assets, built by
// `hack/envtest-assets.sh --with-kcm`) against the control plane with the given
// controllers, for tests that need Deployments to make Pods, EndpointSlices or
// garbage collection. Its output goes to logFile ("" discards it). stop ends it.
func (e *Env) StartControllerManager(controllers []string, logFile string) (stop func(), err error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (build it with: bash hack/envtest-assets.sh --with-kcm)", bin, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+e.Kubeconfig, "--authentication-kubeconfig="+e.Kubeconfig,
		"--authorization-kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--controllers="+strings.Join(controllers, ","), "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10")
	return startLogged(cmd, cancel, logFile)
}
