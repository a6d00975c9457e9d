// Command kubectl-portico is the `kubectl portico` plugin: put it on PATH and run
// `kubectl portico status ingress/NAME`, `kubectl portico nodes` or
// `kubectl portico config-dump NODE`. See internal/kubectlportico.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/portico-dev/portico/internal/kubectlportico"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := kubectlportico.Main(ctx, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
