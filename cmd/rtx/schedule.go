package main

import (
	"slices"
	"strings"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// A step is one retry of a policy's schedule.
type step struct {
	// Retry is n in the delay formula: 1 after the first failed attempt.
	Retry int
	// Min, Median and Max bound the delay before this retry. The jitter's
	// draw U is uniform on [0,1) and the delay does not grow with U, so
	// these are Delay(n, 1) (the infimum), Delay(n, 0.5) and Delay(n, 0).
	Min, Median, Max time.Duration
	// Best, Typical and Worst are when this retry starts, counted from the
	// first attempt's start: Best and Typical add up the minimum and median
	// delays of the retries so far with attempts failing at once; Worst adds
	// up the maximum delays plus, with a per-attempt timeout, every attempt
	// so far running to its timeout.
	Best, Typical, Worst time.Duration
}

// A schedule is what a policy does to a request that keeps failing with a
// class it retries.
type schedule struct {
	Name   string // display name: "default" for the default policy
	Policy *policy.Policy
	Steps  []step
	// GiveUpBest, GiveUpTypical and GiveUpWorst are when the last attempt
	// ends: the last step's times, plus one more timeout for the worst.
	GiveUpBest, GiveUpTypical, GiveUpWorst time.Duration
	// Unbounded is true when the policy has no per-attempt timeout: the
	// worst case then counts delays only, and each attempt may take as long
	// as the server keeps the connection open.
	Unbounded bool
	// CapFrom is the first retry whose delay range reaches WaitMax (its
	// maximum delay is the cap), or 0 when no retry does.
	CapFrom int
}

func newSchedule(name string, p *policy.Policy) schedule {
	s := schedule{Name: name, Policy: p, Unbounded: p.Timeout == 0}
	var best, typ, worst time.Duration
	for n := 1; n < p.Attempts; n++ {
		st := step{Retry: n, Min: p.Delay(n, 1), Median: p.Delay(n, 0.5), Max: p.Delay(n, 0)}
		best += st.Min
		typ += st.Median
		worst += p.Timeout + st.Max
		st.Best, st.Typical, st.Worst = best, typ, worst
		s.Steps = append(s.Steps, st)
		if s.CapFrom == 0 && st.Max >= p.WaitMax {
			s.CapFrom = n
		}
	}
	s.GiveUpBest, s.GiveUpTypical, s.GiveUpWorst = best, typ, worst+p.Timeout
	return s
}

// delays returns the sum of the maximum delays: the worst case's waiting.
func (s schedule) delays() time.Duration {
	if len(s.Steps) == 0 {
		return 0
	}
	last := s.Steps[len(s.Steps)-1]
	return last.Worst - time.Duration(len(s.Steps))*s.Policy.Timeout
}

// classTree returns the classes of c in depth-first order (each parent
// before its children, siblings sorted) with each one's depth, computed
// from Classes.Is since the tree exposes no parent accessor.
func classTree(c *policy.Classes) (names []string, depth map[string]int) {
	all := c.Names()
	depth = make(map[string]int, len(all))
	parent := make(map[string]string, len(all))
	for _, n := range all {
		for _, a := range all {
			if a != n && c.Is(n, a) {
				depth[n]++
			}
		}
	}
	for _, n := range all {
		for _, a := range all {
			if a != n && c.Is(n, a) && depth[a] == depth[n]-1 {
				parent[n] = a
			}
		}
	}
	var visit func(p string)
	visit = func(p string) {
		for _, n := range all { // sorted
			if parent[n] == p { // a root's parent is ""
				names = append(names, n)
				visit(n)
			}
		}
	}
	visit("")
	return names, depth
}

// descendants returns the classes below class, in tree order.
func descendants(c *policy.Classes, class string) []string {
	tree, _ := classTree(c)
	var out []string
	for _, n := range tree {
		if n != class && c.Is(n, class) {
			out = append(out, n)
		}
	}
	return out
}

// retriedClasses describes what the exceptions list covers, expanding
// each listed class into the classes below it: "HTTPException (every
// class: HTTPRequestError, ConnectionError, HTTPTimeoutError)".
func retriedClasses(c *policy.Classes, p *policy.Policy) string {
	if len(p.Exceptions) == 0 {
		return "nothing (exceptions is empty)"
	}
	tree, depth := classTree(c)
	var parts []string
	for _, e := range p.Exceptions {
		// A class already covered by another listed class adds nothing.
		covered := false
		for _, o := range p.Exceptions {
			if o != e && c.Is(e, o) {
				covered = true
			}
		}
		if covered {
			continue
		}
		below := descendants(c, e)
		// e covers every class when all others are below it or above it
		// (its depth counts the classes above: HTTPException has Exception).
		every := len(below) > 0 && len(below) == len(tree)-1-depth[e]
		switch {
		case every && e == policy.Exception:
			parts = append(parts, e+" (any error; every class: "+strings.Join(below, ", ")+")")
		case every:
			parts = append(parts, e+" (every class: "+strings.Join(below, ", ")+")")
		case len(below) > 0:
			parts = append(parts, e+" (with "+strings.Join(below, ", ")+")")
		default:
			parts = append(parts, e)
		}
	}
	return strings.Join(parts, "; ")
}

// notRetried lists the classes the policy leaves alone; a class part of
// which is retried reads "HTTPRequestError other than ConnectionError", and
// stands for its other descendants too. Exception and HTTPException are
// left out when only part of them is retried: their children are listed
// instead, and Exception's own errors (a custom base transport's errors that
// no other class covers) are named only by a policy that lists it.
func notRetried(c *policy.Classes, p *policy.Policy) string {
	tree, _ := classTree(c)
	var parts []string
	skip := map[string]bool{}
	for _, n := range tree {
		if skip[n] || p.Retries(n) {
			continue
		}
		var in []string
		for _, d := range descendants(c, n) {
			if p.Retries(d) {
				in = append(in, d)
			}
		}
		switch {
		case len(in) == 0:
			parts = append(parts, n)
			for _, d := range descendants(c, n) {
				skip[d] = true
			}
		case n != policy.Exception && n != policy.HTTPException:
			// "n other than ..." covers n's other descendants too.
			parts = append(parts, n+" other than "+strings.Join(topmost(c, in), ", "))
			for _, d := range descendants(c, n) {
				skip[d] = true
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ")
}

// topmost keeps the classes of list that no other class of list covers.
func topmost(c *policy.Classes, list []string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(n string) bool {
		for _, o := range list {
			if o != n && c.Is(n, o) {
				return true
			}
		}
		return false
	})
}

// postRetries says when the policy retries non-idempotent requests (POST,
// PATCH, ...), following the transport's idempotency rule.
func postRetries(p *policy.Policy) string {
	switch {
	case p.Attempts <= 1:
		return "one attempt, like every request"
	case p.RetryNonIdempotent && p.IdempotencyKey:
		return "retried like GET on every class above (retry_non_idempotent = true), " +
			"with one generated Idempotency-Key kept on every attempt (idempotency_key = true)"
	case p.RetryNonIdempotent:
		return "retried like GET on every class above (retry_non_idempotent = true): " +
			"a request the server already acted on may run twice"
	case p.IdempotencyKey:
		return "retried on every class above, with one generated Idempotency-Key " +
			"kept on every attempt (idempotency_key = true)"
	case p.Retries(policy.ConnectionError):
		return "retried only when never sent (connection refused, dial failure, " +
			"HTTP/2 REFUSED_STREAM or GOAWAY before the stream), or when the caller sets an Idempotency-Key header"
	default:
		return "retried only when the caller sets an Idempotency-Key header " +
			"(the never-sent failures are ConnectionError, which this policy does not retry)"
	}
}

// statusRetries says whether the transient statuses are retried: they are
// HTTPRequestError itself, not one of its subclasses.
func statusRetries(p *policy.Policy) string {
	if p.Retries(policy.HTTPRequestError) {
		return "408, 429, 5xx (not 501, 505): retried, Retry-After up to wait_max"
	}
	return "408, 429, 5xx: not retried (HTTPRequestError is not listed)"
}

// jitterText names the jitter setting.
func jitterText(j float64) string {
	switch j {
	case 1:
		return "full jitter"
	case 0:
		return "no jitter"
	}
	return "jitter " + fmtNum(j)
}
