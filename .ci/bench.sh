#!/usr/bin/env bash
# Checks the bench module: vet, the race tests (fault matrix, leak test,
# scenarios), a short run of every benchmark and a small scenario table to
# prove they still run.
# The benchmark numbers of bench/README.md come from longer runs given there.
set -euo pipefail
cd "$(dirname "$0")/../bench"
export PATH="/usr/local/go/bin:$PATH"

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
# The bench module follows the root module through a replace directive: when
# the root gains a dependency, bench's go.sum lags until someone runs tidy.
# Say so, and test against the current root rather than fail on bookkeeping.
if ! go mod tidy -diff >/dev/null 2>&1; then
  echo "warning: bench/go.mod or go.sum is not tidy (run: cd bench && go mod tidy); tidying for this run"
  go mod tidy
fi
go vet ./...
go test -race -count=1 ./...
go test -count=1 -run '^$' -bench . -benchtime 100x ./...
go run ./cmd/scenarios -n 40 -workers 4 -only 503
