#!/usr/bin/env bash
# Checks the rtx command, a Go module of its own (cobra and gonum stay out of
# the library's go.mod): vet, then the race tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The command's go.mod replaces the library with the working tree, so a new
# dependency of the library needs a go.sum line here too: -mod=mod lets the
# go command add it instead of failing; "go mod tidy" in cmd/rtx records it.
export GOFLAGS="$(go env GOFLAGS) -mod=mod"
cd cmd/rtx && go vet ./... && go test -race -count=1 ./...
