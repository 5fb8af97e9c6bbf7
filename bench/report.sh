#!/usr/bin/env bash
# Produces the tables of README.md. The benchmarks run COUNT times (default
# 15) as whole passes, BENCHTIME (default 1s) per benchmark, so that every
# library meets the same machine load; benchstat gives the medians and
# cmd/targets checks rtx's targets on them (BENCH, default ".", selects
# benchmarks). Then the scenario table and the hedging table.
# Outputs go to DIR (default a new temporary directory).
#
#   bash report.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH"
out=${1:-$(mktemp -d)}
mkdir -p "$out"
benchstat=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(go version); nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
go test -c -o "$out/bench.test" .
: >"$out/bench.txt"
for _ in $(seq "${COUNT:-15}"); do
  "$out/bench.test" -test.run '^$' -test.bench "${BENCH:-.}" -test.benchtime "${BENCHTIME:-1s}" >>"$out/bench.txt"
done
go run "$benchstat" -col /lib "$out/bench.txt" | tee "$out/benchstat.txt"
go run ./cmd/targets -markdown "$out/bench.txt" | tee "$out/targets.txt" || true
go run ./cmd/scenarios -n "${REQUESTS:-400}" -workers 8 -markdown | tee "$out/scenarios.md"
go run ./cmd/hedge -markdown | tee "$out/hedge.md"
echo "outputs in $out"
