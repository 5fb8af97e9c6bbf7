// Package breaker says how rtx keys and reports its circuit breakers.
//
// A [rtx.Transport] or [rtx.Retrier] keeps one circuit per key, by default
// one per upstream host:port ([ByHost]), each a gobreaker two-step breaker
// tuned by the [policy.Breaker] settings of the snapshot in force. A
// circuit opens after fail_max consecutive classified failures, turns
// half-open after reset_timeout_sec, lets one probe through and closes when
// the probe succeeds. When the settings of a circuit change, that circuit
// starts afresh with the new values; the others keep their state.
//
// This package holds only what a user chooses: the key and a state-change
// callback, in a [Config] given to rtx.WithCircuits.
package breaker

import (
	"net/http"

	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/internal/hostport"
)

// Target is what a circuit key is computed from.
type Target struct {
	Request   *http.Request // the attempt's request; nil for a Retrier
	Policy    string        // the policy's name ("default" for the default)
	Operation string        // rtx.WithOperationName
}

// ByHost keys circuits by upstream: the request's lower-cased host:port
// (the port from the scheme when the URL has none); without a request, by
// operation. It is the default, and the key rtx's budgets use.
func ByHost(t Target) string {
	if t.Request == nil || t.Request.URL == nil {
		return t.Operation
	}
	return string(hostport.Append(nil, t.Request.URL))
}

// ByPolicy keys circuits by policy name.
func ByPolicy(t Target) string { return t.Policy }

// ByOperation keys circuits by operation name (rtx.WithOperationName).
func ByOperation(t Target) string { return t.Operation }

// StateChange reports a circuit moving from one state to another.
type StateChange struct {
	Circuit  string          // the circuit's name
	From, To gobreaker.State // the states before and after
}

// Config says how a Transport's or Retrier's circuits are keyed and
// reported. The zero value keys by [ByHost] and reports nothing. A Config
// is read once, when the Transport or Retrier is made.
type Config struct {
	// Key maps an attempt to its circuit's name; nil means [ByHost]. It
	// must be safe for concurrent use.
	Key func(Target) string

	// OnStateChange, if set, is told of every state change. Unlike
	// gobreaker's own callback it runs outside the breaker's lock, so it
	// may use the Transport. Changes of one circuit are reported in order
	// and one at a time, usually on the goroutine whose attempt caused
	// them, or else on the next goroutine to use that circuit; changes of
	// different circuits may be reported concurrently.
	OnStateChange func(StateChange)
}
