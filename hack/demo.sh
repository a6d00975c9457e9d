#!/usr/bin/env bash
# Runs Portico on a local control plane (a real kube-apiserver and etcd, provisioned into
# ~/.cache/portico by hack/envtest-assets.sh on first use) and prints what kubectl shows.
# Arguments go to cmd/portico-demo, e.g. `make demo ARGS=--wait` keeps it running.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh)}
export KUBEBUILDER_ASSETS
exec go run ./cmd/portico-demo "$@"
