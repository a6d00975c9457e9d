#!/usr/bin/env bash
# Runs every test. Integration tests start a real kube-apiserver and etcd (internal/testenv);
# node-agent tests need root and real network namespaces: they skip for other users unless
# PORTICO_REQUIRE_PRIVILEGED=1, which turns the skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh)}
export KUBEBUILDER_ASSETS
go test -count=1 -timeout 30m ./... "$@"
