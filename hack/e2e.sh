#!/usr/bin/env bash
# Runs the Ginkgo end-to-end suite (e2e/). As root it builds a local cluster (see
# e2e/framework/local): kube-apiserver, etcd and kube-controller-manager from the cached
# envtest assets, kwok, the chart's binaries, node agents in network namespaces. With
# PORTICO_E2E_KUBECONFIG it runs on a real cluster where the chart is installed.
# Arguments go to the test binary, e.g. `make e2e ARGS=--ginkgo.label-filter=S3`.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh --with-kcm)}
export KUBEBUILDER_ASSETS
bash hack/kwok.sh >/dev/null
exec go test -count=1 -timeout 20m ./e2e/ -v -args -ginkgo.v "$@"
