#!/usr/bin/env bash
# Regenerates every generated file into the tree and fails if anything changed, then runs
# gofmt and go vet. Works without git: it compares against a copy taken beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a paths <<<"$(make -s print-generated)"  # the Makefile's GENERATED
before=$(mktemp -d); trap 'rm -rf "$before"' EXIT
for p in "${paths[@]}"; do [ -e "$p" ] && mkdir -p "$before/$(dirname "$p")" && cp -a "$p" "$before/$p"; done
make -s generate manifests chart bundle >/dev/null
stale=0
for p in "${paths[@]}"; do
  if [ -e "$p" ] || [ -e "$before/$p" ]; then
    if ! diff -ruN "$before/$p" "$p" >/tmp/portico-verify.diff 2>&1; then
      echo "verify: $p is stale; run 'make generate manifests chart bundle' and commit:"; head -40 /tmp/portico-verify.diff; stale=1
    fi
  fi
done
# bpf2go output is committed; regenerate it where clang is available.
if command -v clang >/dev/null && ls nodeagent/bpf/*.c >/dev/null 2>&1; then
  cp -a nodeagent/bpf "$before/bpf"
  (cd nodeagent/bpf && go generate ./...) >/dev/null
  for f in nodeagent/bpf/*_bpfel.go; do
    cmp -s "$f" "$before/bpf/$(basename "$f")" || { echo "verify: $f is stale; run 'go generate ./nodeagent/bpf'"; stale=1; }
  done
fi
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
[ -z "$unformatted" ] || { echo "verify: not gofmt-formatted:"; echo "$unformatted"; stale=1; }
go vet ./... || stale=1
[ $stale = 0 ] && echo "verify: ok"
exit $stale
