// Package integration holds rtx's drop-in tests: real SDKs (the Prometheus
// HTTP API client, the Pushgateway client) given an rtx transport, talking to
// real servers started from Debian's packages, through a proxy that injects
// connection resets, slow answers and 503s. See README.md.
//
// It is a module of its own so the SDKs never enter rtx's go.mod.
package integration
