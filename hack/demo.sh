#!/usr/bin/env bash
# Runs Portico on this machine and shows what it does (see cmd/portico-demo): as root, a
# local control plane, three node network namespaces with node agents and a client
# namespace; otherwise the control plane part only. The envtest assets (kube-apiserver,
# etcd, kube-controller-manager) are provisioned into ~/.cache/portico on first use.
# Arguments go to cmd/portico-demo: `make demo ARGS=--wait` keeps it running,
# --down removes what a killed demo left.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--down" ]; then
  exec go run ./cmd/portico-demo --down
fi
if [ "$(id -u)" = 0 ]; then
  KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh --with-kcm)}
else
  KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh)}
fi
export KUBEBUILDER_ASSETS
exec go run ./cmd/portico-demo "$@"
