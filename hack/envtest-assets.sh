#!/usr/bin/env bash
# Provides kube-apiserver, etcd (and, with --with-kcm, kube-controller-manager) matching the
# client-go minor in go.mod, and prints the directory to use as KUBEBUILDER_ASSETS.
#
# Where setup-envtest can download, its binaries are used. Where it cannot (no internet,
# only a Go module proxy), the binaries are built once from Go modules into a cache outside
# the repository: k8s.io/kubernetes with its staging modules replaced by the published
# k8s.io/* versions, and etcd from a tiny main around etcdmain.Main. Idempotent: a warm
# cache returns in well under a second.
#
# Environment: PORTICO_CACHE (default ~/.cache/portico), PORTICO_K8S_VERSION (default from go.mod).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
with_kcm=0
for a in "$@"; do
  case "$a" in
    --with-kcm) with_kcm=1 ;;
    *) echo "usage: $0 [--with-kcm]" >&2; exit 2 ;;
  esac
done

cache=${PORTICO_CACHE:-$HOME/.cache/portico}
clientgo=$(cd "$repo" && go list -m -f '{{.Version}}' k8s.io/client-go) # v0.37.2
k8s_version=${PORTICO_K8S_VERSION:-v1.${clientgo#v0.}}                   # v1.37.2
bin="$cache/envtest/$k8s_version"
mkdir -p "$bin"
log() { echo "envtest-assets: $*" >&2; }

have() {
  [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] &&
    { [ $with_kcm = 0 ] || [ -x "$bin/kube-controller-manager" ]; } &&
    { command -v kubectl >/dev/null || [ -x "$bin/kubectl" ]; }
}
if have; then echo "$bin"; exit 0; fi

# 1. setup-envtest, if its download location is reachable (bounded: no internet here must not hang CI).
if [ $with_kcm = 0 ] && [ "${PORTICO_SKIP_SETUP_ENVTEST:-}" != 1 ]; then
  minor=${k8s_version%.*}; minor=${minor#v}
  if dir=$(cd "$repo" && timeout 60 go tool setup-envtest use "$minor.x" --bin-dir "$cache/setup-envtest" -p path 2>/dev/null) && [ -x "$dir/kube-apiserver" ]; then
    ln -sf "$dir/kube-apiserver" "$bin/kube-apiserver"
    ln -sf "$dir/etcd" "$bin/etcd"
    log "using setup-envtest binaries from $dir"
    echo "$bin"; exit 0
  fi
  log "setup-envtest could not download $minor.x; building from Go modules (one time, ~8 min on 2 cores)"
fi

build="$cache/envtest/build-$k8s_version"
mkdir -p "$build/k8s" "$build/etcd"
export GOFLAGS=-mod=mod GOWORK=off

# 2. kube-apiserver (and kube-controller-manager) from k8s.io/kubernetes.
build_k8s() {
  local cmds=("$@")
  (
    cd "$build/k8s"
    if [ ! -f go.mod ]; then
      cat > go.mod <<MOD
module portico.local/k8sbuild

go 1.26
MOD
      go mod edit -require="k8s.io/kubernetes@$k8s_version"
      kmod=$(go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
      # Every staging module the kubernetes go.mod replaces with ./staging/... is published
      # as k8s.io/<name> v0.<minor>.<patch>.
      for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod"); do
        go mod edit -replace="$m=$m@v0.${k8s_version#v1.}"
      done
      # The kubernetes go.mod's own requirements pin everything else (etcd client, grpc, otel).
      go mod edit -go=1.26
      printf 'package main\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' > tools.go
      sed -i 's/^package main/\/\/go:build tools\n\npackage main/' tools.go
      go mod tidy >&2
    fi
    for c in "${cmds[@]}"; do
      log "building $c $k8s_version"
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$bin/$c.tmp" "$bin/$c"
    done
  )
}

# 3. etcd: the server version kubernetes itself requires.
build_etcd() {
  (
    cd "$build/etcd"
    if [ ! -f go.mod ]; then
      kmod=$(cd "$build/k8s" && go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
      ev=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$kmod" | head -1)
      cat > go.mod <<MOD
module portico.local/etcdbuild

go 1.26
MOD
      cat > main.go <<'SRC'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
SRC
      go mod edit -require="go.etcd.io/etcd/server/v3@$ev"
      go mod tidy >&2
    fi
    log "building etcd"
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" .
    mv "$bin/etcd.tmp" "$bin/etcd"
  )
}

cmds=()
[ -x "$bin/kube-apiserver" ] || cmds+=(kube-apiserver)
[ $with_kcm = 1 ] && [ ! -x "$bin/kube-controller-manager" ] && cmds+=(kube-controller-manager)
# kubectl: only where the machine has none (tests and the demo call it).
command -v kubectl >/dev/null || [ -x "$bin/kubectl" ] || cmds+=(kubectl)
[ ${#cmds[@]} -gt 0 ] && build_k8s "${cmds[@]}"
[ -x "$bin/etcd" ] || build_etcd
have || { log "assets incomplete in $bin"; exit 1; }
echo "$bin"
