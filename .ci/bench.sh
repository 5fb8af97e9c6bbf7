#!/usr/bin/env bash
# Checks the bench module: vet, the race tests (fault matrix, leak test,
# scenarios), and a short run of every benchmark to prove they still run.
# The benchmark numbers of bench/README.md come from longer runs given there.
set -euo pipefail
cd "$(dirname "$0")/../bench"
export PATH="/usr/local/go/bin:$PATH"

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 ./...
go test -count=1 -run '^$' -bench . -benchtime 100x ./...
go run ./cmd/scenarios -n 40 -workers 4 -only 503
