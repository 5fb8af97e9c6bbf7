#!/usr/bin/env bash
# Live configuration checks: the file watcher, the etcd source against a
# real etcd server (Debian's etcd-server; the tests start it themselves on
# loopback ports), the Consul source against a loopback implementation of
# Consul's KV API, and a smoke run of the livereload example.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

if [ ! -x /usr/bin/etcd ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server
fi
# Where Debian's package also starts an etcd service (on 127.0.0.1:2379), the
# tests leave it alone: they run their own server on free ports.

echo "== the root package and liveconfig link no etcd, Consul or gRPC"
heavy=$(go list -deps . ./liveconfig | grep -E 'go\.etcd\.io|hashicorp/consul|google\.golang\.org/grpc' || true)
if [ -n "$heavy" ]; then
  echo "unexpected dependencies:"; echo "$heavy"; exit 1
fi

echo "== go test -race ./liveconfig/..."
go test -race -count=1 ./liveconfig/...

echo "== livereload example (edits its own settings file, then exits)"
out=$(go run ./examples/livereload -demo -duration 3.6s -interval 200ms)
for want in "now in force: fast_retry = 5 attempts" "settings not applied" "now in force: fast_retry = 2 attempts"; do
  if ! grep -qF "$want" <<<"$out"; then
    echo "livereload: missing \"$want\" in its output:"; echo "$out"; exit 1
  fi
done
echo "livereload: ok"
