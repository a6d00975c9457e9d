package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KwokNodeSelector is the annotation of the Nodes kwok manages (KwokCommand): Pods bound
// to them become Ready without running, so Deployments get Ready Pods and EndpointSlices
// on a control plane with no kubelet.
const KwokNodeSelector = "kwok.x-k8s.io/node=fake"

// KwokCommand is kwok (built once into the cache by hack/kwok.sh) for this control
// plane, managing the Nodes annotated KwokNodeSelector. The e2e suite starts it as a
// process it can stop and restart; StartKwok runs it to the end of a test.
func (e *Env) KwokCommand(ctx context.Context) (*exec.Cmd, error) {
	out, err := exec.Command("bash", filepath.Join(RepoRoot(), "hack", "kwok.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("hack/kwok.sh: %w", err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != 2 {
		return nil, fmt.Errorf("hack/kwok.sh printed %q, want the binary and its stages", out)
	}
	return exec.CommandContext(ctx, paths[0], "--kubeconfig="+e.Kubeconfig, "--config="+paths[1],
		"--manage-nodes-with-annotation-selector="+KwokNodeSelector, "--node-ip=10.0.0.1", "--cidr=10.0.0.0/16",
		"--server-address=127.0.0.1:0"), nil
}

// StartKwok runs KwokCommand with its output in logFile ("" discards it) until stop.
func (e *Env) StartKwok(logFile string) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := e.KwokCommand(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return startLogged(cmd, cancel, logFile)
}

// startLogged starts cmd (made with a context that cancel ends) with its output in
// logFile ("" discards it); stop cancels it and waits for it to exit.
func startLogged(cmd *exec.Cmd, cancel context.CancelFunc, logFile string) (stop func(), err error) {
	cmd.WaitDelay = 5 * time.Second
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			cancel()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() { cancel(); <-done }, nil
}
