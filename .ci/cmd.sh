#!/usr/bin/env bash
# Checks the rtx command, a module of its own (cobra and gonum stay out of
# the library's go.mod): vet, then the race tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cd cmd/rtx && go vet ./... && go test -race -count=1 ./...
