#!/usr/bin/env bash
# Checks the rtx command, a Go module of its own (cobra and gonum stay out of
# the library's go.mod): vet, then the race tests, built against the library
# in this checkout through cmd/rtx/go.work.
set -euo pipefail
cd "$(dirname "$0")/../cmd/rtx"
# go.mod must stay free of replace directives: "go install
# github.com/athomic-go/rtx/cmd/rtx@version" refuses a module that has one.
# The local library comes from go.work, which that form ignores.
if grep -Eq '^[[:space:]]*replace([[:space:]]|\()' go.mod; then
  echo "cmd/rtx/go.mod has a replace directive; put it in cmd/rtx/go.work" >&2
  exit 1
fi
export GOWORK="$PWD/go.work"
go vet ./... && go test -race -count=1 ./...
