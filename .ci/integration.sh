#!/usr/bin/env bash
# Integration tests: rtx inside real SDKs (the Prometheus HTTP API client and
# the Pushgateway client) against real servers from Debian's packages, with a
# fault-injecting proxy between them. Installs the servers when missing, then
# runs the integration module's tests. Called by .ci/run; runnable alone.
set -euo pipefail

cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
if ((${#need[@]})); then
	echo "integration: installing ${need[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

cd integration
go test -race -count=1 ./...
