#!/usr/bin/env bash
# Provides kwok (sigs.k8s.io/kwok), which makes the Pods of tests Ready without a
# kubelet (the Gateway API conformance run): built once from the Go module proxy into
# a cache outside the repository, with the "fast" node and pod stages the module ships
# gathered into one config file. Prints the binary's path, then the config's.
set -euo pipefail
version=v0.8.0
dir=${PORTICO_CACHE:-$HOME/.cache/portico}/kwok-$version
if [ ! -x "$dir/kwok" ] || [ ! -s "$dir/stages.yaml" ]; then
  mkdir -p "$dir"
  echo "building kwok $version into $dir (a few minutes, once)" >&2
  (cd /tmp && GOBIN="$dir" GOFLAGS=-mod=mod go install "sigs.k8s.io/kwok/cmd/kwok@$version") >&2
  src=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  for f in "$src"/kustomize/stage/node/fast/node-initialize.yaml "$src"/kustomize/stage/pod/fast/pod-*.yaml; do
    echo "---"; cat "$f"
  done > "$dir/stages.yaml"
fi
echo "$dir/kwok"
echo "$dir/stages.yaml"
