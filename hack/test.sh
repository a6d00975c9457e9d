#!/usr/bin/env bash
# Runs every test. Integration tests start a real kube-apiserver and etcd (internal/testenv);
# node-agent tests need root and real network namespaces: they skip for other users unless
# PORTICO_REQUIRE_PRIVILEGED=1, which turns the skip into a failure. The e2e suite (e2e/,
# also `make e2e`) is among them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  # The e2e suite (e2e/) runs as root: it needs kube-controller-manager and kwok.
  KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh --with-kcm)}
  bash hack/kwok.sh >/dev/null
  # The e2e suites start every binary as built with CGO_ENABLED=0 (internal/testproc), a
  # second compilation of every package; on a cold cache that takes minutes on two cores,
  # which would otherwise count against their BeforeSuite timeouts.
  CGO_ENABLED=0 go build ./cmd/...
else
  KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash hack/envtest-assets.sh)}
fi
export KUBEBUILDER_ASSETS
# The suites that run whole clusters of processes (e2e/, e2e/install, nodeagent/e2e) go
# one at a time after the rest: run side by side on two cores they starve each other's
# agents, and a probe that counts ARP answers through an apiserver outage then measures
# the machine rather than Portico.
heavy='/(e2e|e2e/install|nodeagent/e2e)$'
rc=0
go test -count=1 -timeout 30m $(go list ./... | grep -Ev "$heavy") "$@" || rc=$?
go test -count=1 -timeout 30m -p 1 $(go list ./... | grep -E "$heavy") "$@" || rc=$?
exit $rc
