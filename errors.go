package rtx

import (
	"errors"
	"fmt"
)

// ErrCircuitOpen reports that a circuit breaker refused an attempt. Errors
// returned when a circuit is open match it with [errors.Is].
var ErrCircuitOpen = errors.New("rtx: circuit open")

// ErrBudgetExhausted reports that retries stopped because the upstream's
// retry budget was spent (see the budget_* policy settings).
var ErrBudgetExhausted = errors.New("rtx: retry budget exhausted")

// CircuitOpenError reports an attempt refused by an open (or half-open and
// busy) circuit. It matches [ErrCircuitOpen] and, through Unwrap, the
// breaker's own error (gobreaker.ErrOpenState or ErrTooManyRequests).
type CircuitOpenError struct {
	Circuit string // the circuit's name, a host:port by default
	Err     error  // the breaker's error
}

// Error names the circuit and the breaker's error.
func (e *CircuitOpenError) Error() string {
	return fmt.Sprintf("rtx: circuit %q refused the request: %v", e.Circuit, e.Err)
}

// Is reports whether target is ErrCircuitOpen.
func (e *CircuitOpenError) Is(target error) bool { return target == ErrCircuitOpen }

// Unwrap returns Err.
func (e *CircuitOpenError) Unwrap() error { return e.Err }

// Reason says why a retry loop stopped, as reported by [RetryError] and
// [FailEvent]. Its values are the Reason constants.
type Reason string

// Reasons a retry loop stopped.
const (
	ReasonAttempts      Reason = "attempts exhausted"     // every attempt of the policy was used
	ReasonDeadline      Reason = "deadline"               // the next delay would pass the context's deadline
	ReasonCanceled      Reason = "canceled"               // the context ended during a delay
	ReasonCircuitOpen   Reason = "circuit open"           // a circuit breaker refused the next attempt
	ReasonBudget        Reason = "retry budget exhausted" // the upstream's retry budget is spent
	ReasonRetryAfter    Reason = "retry-after too long"   // the server asked for a wait above wait_max or past the deadline
	ReasonBody          Reason = "body not replayable"    // the request body cannot be sent again
	ReasonNotIdempotent Reason = "not idempotent"         // the method is not safe to resend
)

// hint says how to avoid a reason, where the user can.
func (r Reason) hint() string {
	if r == ReasonNotIdempotent {
		return "send an Idempotency-Key header, or set idempotency_key = true or retry_non_idempotent = true in the policy, to allow the retry"
	}
	return ""
}

// RetryError is returned when a retry loop ends on an error of a class its
// policy lists: attempts spent, or stopped early by a deadline, a circuit, a
// budget, a cancellation during a delay, or a body or method that cannot be
// resent. Errors of no listed class are returned unchanged instead.
//
// A RetryError is never returned together with a response.
type RetryError struct {
	// Policy is the name of the policy in force ("default" for the default).
	Policy string
	// Attempts is the number of attempts made (0 when none was).
	Attempts int
	// Class is the class of the last failure.
	Class string
	// Reason says why the loop stopped.
	Reason Reason
	// Err is the cause: the last attempt's error, joined with the error
	// that stopped the loop where there is one (context, [ErrCircuitOpen]).
	Err error
}

// Error describes the failure without the request's headers or body; a URL
// quoted by a wrapped *url.Error loses its userinfo and query values.
func (e *RetryError) Error() string {
	msg := fmt.Sprintf("rtx: policy %q: gave up after %d attempt%s (%s, %s): %v",
		e.Policy, e.Attempts, plural(e.Attempts), e.Class, e.Reason, redactError(e.Err))
	if h := e.Reason.hint(); h != "" {
		msg += " (" + h + ")"
	}
	return msg
}

// Unwrap returns Err.
func (e *RetryError) Unwrap() error { return e.Err }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// joinStop returns the cause of a stopped loop: the last error and what
// stopped it, both visible to errors.Is.
func joinStop(last, stop error) error {
	switch {
	case stop == nil:
		return last
	case last == nil:
		return stop
	}
	return fmt.Errorf("%w (after: %w)", stop, last)
}
