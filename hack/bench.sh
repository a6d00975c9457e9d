#!/usr/bin/env bash
# Runs the Go benchmarks and prints one table: figure, value, and the command that
# measures it alone. Figures are measured here, never asserted in tests (a loaded CI
# machine would make them flaky); docs quote them with the command.
#   make bench                                   every package below, -benchtime 1x
#   make bench ARGS="./internal/ipam"            some packages only
#   BENCHTIME=5x make bench                      more iterations
# The bench/ programs (lbipam, l2writes, envoyconfig) run minutes each and print their
# own tables: `go run ./bench/<name> -h`.
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-1x}
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Benchmark' . | xargs -n1 dirname | sort -u)
fi
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  KUBEBUILDER_ASSETS=$(bash hack/envtest-assets.sh)
fi
export KUBEBUILDER_ASSETS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for p in "${pkgs[@]}"; do
  p=./${p#./}
  echo "running the benchmarks of $p ..." >&2
  # Network-namespace benchmarks share lab prefixes with the tests: one at a time.
  if ! flock /tmp/portico-netns.lock go test -run '^$' -bench . -benchtime "$benchtime" -count 1 "$p" >"$out.pkg" 2>&1; then
    echo "FAILED: go test -bench . $p" >&2
    tail -20 "$out.pkg" >&2
  fi
  awk -v pkg="$p" -v bt="$benchtime" '/^Benchmark/ { $1 = $1; print pkg, bt, $0 }' "$out.pkg" >>"$out"
done
rm -f "$out.pkg"
# One row per reported figure: ns/op, B/op, allocs/op and every b.ReportMetric unit.
printf '| figure | value | command |\n|---|---|---|\n'
# Fields: package, benchtime, name, iterations, then value unit pairs.
awk '{
  name = $3; sub(/-[0-9]+$/, "", name)
  pat = "^" name "$"; gsub(/\//, "$/^", pat)
  for (i = 5; i + 1 <= NF; i += 2) {
    if ($(i+1) == "ns/op" && $i == 0) continue
    printf "| %s %s (%s) | %s | `go test -run ^$ -bench %s -benchtime %s %s` |\n", $1, name, $(i+1), $i, pat, $2, $1
  }
}' "$out"
