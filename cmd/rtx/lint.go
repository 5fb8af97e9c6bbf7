package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// severity ranks a finding. Errors make check fail; warnings make it fail
// with --strict.
type severity int

const (
	sevWarning severity = iota + 1
	sevError
)

func (s severity) String() string {
	if s == sevError {
		return "error"
	}
	return "warning"
}

// A finding is one thing check reports.
type finding struct {
	Severity severity
	// Where names the file and the policy, as load errors do:
	// `settings.toml: retry policy "fast_retry"`. Empty for load errors,
	// whose Message already names them.
	Where string
	// Check is a short identifier of the lint ("no-timeout", "no-jitter",
	// ...), "load" for load errors.
	Check   string
	Message string
}

// String renders the finding on one line.
func (f finding) String() string {
	if f.Where == "" {
		return f.Severity.String() + ": " + f.Message
	}
	return fmt.Sprintf("%s: %s: %s [%s]", f.Severity, f.Where, f.Message, f.Check)
}

// lintOptions are the thresholds of the lints.
type lintOptions struct {
	// MaxWait is the longest a policy may wait in total, delays only,
	// before giving up when it has no per-attempt timeout.
	MaxWait time.Duration
}

// loadFindings turns a load error into findings: one per joined error (one
// per line of the error otherwise), each already naming file, policy and
// field.
func loadFindings(err error) []finding {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []finding
	for _, e := range errs {
		for _, line := range strings.Split(e.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, finding{Severity: sevError, Check: "load", Message: line})
			}
		}
	}
	return out
}

// where names a policy as the policy package's load errors do.
func where(source, name string) string {
	if name == "default" || name == "" {
		return source + ": default_policy"
	}
	return fmt.Sprintf("%s: retry policy %q", source, name)
}

// lintPolicy returns the findings for one policy as requests get it (in
// mesh mode or with retries disabled, that is one attempt, and nothing to
// find). The lints:
//
//   - no-timeout: no per-attempt timeout and the maximum delays alone add
//     up to more than MaxWait. Without a timeout the worst case is unbounded
//     anyway (an attempt may hang); the threshold picks out the policies
//     whose waiting alone already holds a caller longer than intended.
//   - no-jitter: jitter = 0, so clients that failed together retry together.
//   - backoff-unused: backoff > 1 with wait_min == wait_max: every delay is
//     the same, the multiplier changes nothing.
//   - capped: the delays reach the wait_max cap before the last retry, so
//     the retries from there on all wait up to the cap: the exponential
//     schedule is cut short and its tail is a fixed-interval poll. Not
//     reported when backoff is 1 (a fixed interval is then the intent) or
//     when backoff-unused already says so.
//   - non-idempotent-all: retry_non_idempotent = true with HTTPException
//     listed, so POSTs are retried after timeouts and 5xx answers, when the
//     server may already have acted on them.
func lintPolicy(source, name string, p *policy.Policy, o lintOptions) []finding {
	if p.Attempts <= 1 {
		return nil
	}
	s := newSchedule(name, p)
	w := where(source, name)
	var out []finding
	add := func(check, format string, args ...any) {
		out = append(out, finding{Severity: sevWarning, Where: w, Check: check, Message: fmt.Sprintf(format, args...)})
	}
	if p.Timeout == 0 && s.delays() > o.MaxWait {
		add("no-timeout", "gives up after %s of delays at worst, above --max-wait %s, "+
			"and with no timeout_seconds each of its %d attempts may hang for as long as "+
			"the server keeps it open: set timeout_seconds, or lower attempts or wait_max_seconds",
			fmtDur(s.delays()), fmtDur(o.MaxWait), p.Attempts)
	}
	if p.Jitter == 0 {
		add("no-jitter", "jitter = 0: clients that failed together retry together, "+
			"in step, and hit a recovering server all at once; set jitter (1 = full jitter)")
	}
	backoffUnused := p.Backoff > 1 && p.WaitMin == p.WaitMax
	if backoffUnused {
		add("backoff-unused", "backoff = %s has no effect: wait_min_seconds = wait_max_seconds = %s, "+
			"so every delay is %s; set wait_max_seconds above wait_min_seconds or backoff = 1",
			fmtNum(p.Backoff), fmtNum(p.WaitMin.Seconds()), fmtDur(p.WaitMin))
	}
	last := p.Attempts - 1
	if !backoffUnused && p.Backoff > 1 && s.CapFrom > 0 && s.CapFrom < last {
		add("capped", "delays reach the wait_max cap (%s) at retry %d of %d: retries %d-%d all wait up to %s "+
			"(%s..%s with jitter), so backoff stops growing and the last %s are a fixed-interval poll; "+
			"if that is not meant, raise wait_max_seconds or lower attempts",
			fmtDur(p.WaitMax), s.CapFrom, last, s.CapFrom, last, fmtDur(p.WaitMax),
			fmtDur(s.Steps[last-1].Min), fmtDur(s.Steps[last-1].Max), plural(last-s.CapFrom+1, "retry"))
	}
	if p.RetryNonIdempotent && slices.Contains(p.Exceptions, policy.HTTPException) {
		add("non-idempotent-all", "retry_non_idempotent = true with HTTPException: POST and PATCH are "+
			"retried after timeouts and 5xx answers, when the server may already have acted, "+
			"so they can run twice; list narrower classes (ConnectionError) or use idempotency_key = true "+
			"with a server that honours it")
	}
	return out
}

// lintSnapshot lints every policy of s (or only the one named).
func lintSnapshot(s *policy.Snapshot, names []string, o lintOptions) ([]finding, error) {
	var out []finding
	for _, n := range names {
		p, err := s.Policy(n)
		if err != nil {
			return nil, err
		}
		out = append(out, lintPolicy(s.Source(), n, p, o)...)
	}
	return out, nil
}

// count returns the number of errors and warnings.
func count(fs []finding) (errs, warns int) {
	for _, f := range fs {
		if f.Severity == sevError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

// errFindings is returned when check or plan reported findings that make
// the command fail; the findings are already printed.
var errFindings = errors.New("findings reported")
