package rtx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// doSettings adds "jittery" to the contract policies: 4 attempts, waits
// from 1 s to 3 s, backoff 2, full jitter.
const doSettings = contractSettings + `
[default.resilience.retry.policies.jittery]
attempts = 4
wait_min_seconds = 1.0
wait_max_seconds = 3.0
backoff = 2.0
jitter = 1.0
exceptions = ["HTTPRequestError", "HTTPTimeoutError"]
budget_ratio = -1
`

// script returns a function for Do that fails with errs in turn, then
// succeeds, counting its calls.
func script(calls *int, errs ...error) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls <= len(errs) {
			return errs[*calls-1]
		}
		return nil
	}
}

func TestDoRetriesThenSucceeds(t *testing.T) {
	calls := 0
	err := Do(context.Background(), testFactory(t, doSettings), "quick", script(&calls, mkReset()))
	if err != nil || calls != 2 {
		t.Fatalf("got %v after %d calls, want nil after 2", err, calls)
	}
}

func TestDoUnlistedErrorUnchanged(t *testing.T) {
	errBoom := errors.New("boom")
	for _, err := range []error{errBoom, context.Canceled, x509Err()} {
		calls := 0
		var failed int
		got := Do(context.Background(), testFactory(t, doSettings), "quick", script(&calls, err, err), OnFail(func(FailEvent) { failed++ }))
		if got != err || calls != 1 || failed != 0 {
			t.Errorf("got %v after %d calls (%d give-ups), want %v unchanged after 1", got, calls, failed, err)
		}
	}
}

func x509Err() error {
	return urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})
}

func TestDoAttemptsSpent(t *testing.T) {
	calls := 0
	reset := mkReset()
	err := Do(context.Background(), testFactory(t, doSettings), "quick", script(&calls, reset, reset, reset, reset))
	var re *RetryError
	if !errors.As(err, &re) || calls != 3 {
		t.Fatalf("got %#v after %d calls, want a RetryError after 3", err, calls)
	}
	if re.Attempts != 3 || re.Class != policy.ConnectionError || re.Reason != ReasonAttempts || re.Policy != "quick" || re.Err != reset {
		t.Fatalf("RetryError %+v", re)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%v does not match the last error", err)
	}
}

func TestDoUnknownPolicy(t *testing.T) {
	calls := 0
	err := Do(context.Background(), testFactory(t, doSettings), "nope", script(&calls))
	if err == nil || calls != 0 || !strings.Contains(err.Error(), "jittery") {
		t.Fatalf("got %v after %d calls, want an error naming the known policies before any call", err, calls)
	}
}

func TestDoPerAttemptTimeout(t *testing.T) {
	t.Run("every attempt times out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var deadlines []time.Duration
			start := time.Now()
			calls := 0
			err := Do(context.Background(), testFactory(t, doSettings), "timed", func(ctx context.Context) error {
				calls++
				dl, _ := ctx.Deadline()
				deadlines = append(deadlines, dl.Sub(time.Now()))
				<-ctx.Done()
				return ctx.Err()
			})
			var re *RetryError
			if !errors.As(err, &re) || re.Class != policy.HTTPTimeoutError || re.Attempts != 3 || calls != 3 {
				t.Fatalf("got %#v after %d calls, want a RetryError of class HTTPTimeoutError after 3", err, calls)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%v does not match context.DeadlineExceeded", err)
			}
			if elapsed := time.Since(start); elapsed != 5*time.Second {
				t.Errorf("took %v, want 3 attempts of 1 s and 2 delays of 1 s", elapsed)
			}
			for i, d := range deadlines {
				if d != time.Second {
					t.Errorf("attempt %d had %v to run, want 1s", i+1, d)
				}
			}
		})
	})
	t.Run("fn returns its own error at the timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			errBoom := errors.New("boom")
			calls := 0
			err := Do(context.Background(), testFactory(t, doSettings), "timed", func(ctx context.Context) error {
				calls++
				<-ctx.Done()
				return errBoom // unlisted, but the attempt ended by its timeout
			})
			var re *RetryError
			if !errors.As(err, &re) || re.Class != policy.HTTPTimeoutError || calls != 3 {
				t.Fatalf("got %#v after %d calls, want HTTPTimeoutError after 3", err, calls)
			}
		})
	})
	t.Run("then succeeds", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			var ctxs []context.Context
			err := Do(context.Background(), testFactory(t, doSettings), "timed", func(ctx context.Context) error {
				calls++
				ctxs = append(ctxs, ctx)
				if calls == 1 {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			})
			if err != nil || calls != 2 {
				t.Fatalf("got %v after %d calls", err, calls)
			}
			for i, c := range ctxs {
				if c.Err() == nil {
					t.Errorf("attempt %d's context still alive after Do returned", i+1)
				}
			}
		})
	})
}

func TestDoCancel(t *testing.T) {
	t.Run("during the delay", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(500*time.Millisecond, cancel)
			calls := 0
			start := time.Now()
			err := Do(ctx, testFactory(t, doSettings), "slow", script(&calls, mkReset(), mkReset()))
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != ReasonCanceled || !errors.Is(err, context.Canceled) || !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("got %#v, want a RetryError matching context.Canceled and the reset", err)
			}
			if calls != 1 || time.Since(start) != 500*time.Millisecond {
				t.Errorf("%d calls, returned after %v; want 1 call, at the cancellation", calls, time.Since(start))
			}
		})
	})
	t.Run("during a call", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		reset := mkReset()
		err := Do(ctx, testFactory(t, doSettings), "quick", func(context.Context) error {
			calls++
			cancel()
			return reset
		})
		if err != reset || calls != 1 {
			t.Fatalf("got %v after %d calls, want the call's error unchanged after 1", err, calls)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			calls := 0
			start := time.Now()
			err := Do(ctx, testFactory(t, doSettings), "slow", script(&calls, mkReset(), mkReset(), mkReset()))
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != ReasonDeadline || !errors.Is(err, context.DeadlineExceeded) || re.Attempts != 2 {
				t.Fatalf("got %#v, want a RetryError for the deadline after 2 attempts", err)
			}
			if time.Since(start) != time.Second {
				t.Errorf("returned after %v, want 1s: the 2 s delay would pass the deadline", time.Since(start))
			}
		})
	})
}

func TestDoEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := testFactory(t, doSettings)
		pol, err := f.Policy("jittery")
		if err != nil {
			t.Fatal(err)
		}
		var retries []RetryEvent
		var fails []FailEvent
		var calledAt []time.Time
		timeout := opErr("read", timeoutError{})
		errs := []error{mkReset(), timeout, mkRefused(), mkReset()}
		err = Do(context.Background(), f, "jittery", func(context.Context) error {
			calledAt = append(calledAt, time.Now())
			return errs[len(calledAt)-1]
		}, OnRetry(func(e RetryEvent) { retries = append(retries, e) }), OnFail(func(e FailEvent) { fails = append(fails, e) }),
			WithOperationName("billing"))
		var re *RetryError
		if !errors.As(err, &re) || re.Attempts != 4 {
			t.Fatalf("got %v, want a RetryError after 4 attempts", err)
		}
		if len(retries) != 3 || len(fails) != 1 {
			t.Fatalf("%d retry events, %d fail events; want 3 and 1", len(retries), len(fails))
		}
		wantClass := []string{policy.ConnectionError, policy.HTTPTimeoutError, policy.ConnectionError, policy.ConnectionError}
		for i, e := range retries {
			n := i + 1
			hi := min(pol.WaitMax, time.Duration(float64(pol.WaitMin)*pow(pol.Backoff, n-1)))
			if e.Attempt != n || e.Delay < pol.WaitMin || e.Delay > hi {
				t.Errorf("retry %d: attempt %d, delay %v; want attempt %d, delay in [%v, %v]", n, e.Attempt, e.Delay, n, pol.WaitMin, hi)
			}
			if got := calledAt[n].Sub(calledAt[n-1]); got != e.Delay {
				t.Errorf("retry %d: announced %v, slept %v", n, e.Delay, got)
			}
			if e.Class != wantClass[i] || e.Err != errs[i] || e.StatusCode != 0 {
				t.Errorf("retry %d: class %q, err %v, status %d", n, e.Class, e.Err, e.StatusCode)
			}
			if e.Method != "" || e.URL != "" || e.Operation != "billing" || e.Policy != "jittery" {
				t.Errorf("retry %d: %+v; want no method or URL for Do", n, e)
			}
		}
		fe := fails[0]
		if fe.Attempts != 4 || fe.Class != policy.ConnectionError || fe.Reason != ReasonAttempts || fe.Err != errs[3] ||
			fe.Method != "" || fe.URL != "" || fe.Operation != "billing" {
			t.Errorf("fail event %+v", fe)
		}
	})
}

func pow(x float64, n int) float64 {
	r := 1.0
	for range n {
		r *= x
	}
	return r
}

func TestDoDefaultOperationName(t *testing.T) {
	var op string
	calls := 0
	Do(context.Background(), testFactory(t, doSettings), "quick", script(&calls, mkReset()), OnRetry(func(e RetryEvent) { op = e.Operation }))
	if op != "do" {
		t.Fatalf("operation %q, want %q", op, "do")
	}
}

func TestDoCircuitBreakerHook(t *testing.T) {
	t.Run("open before the first call", func(t *testing.T) {
		calls := 0
		var seen []*http.Request
		err := Do(context.Background(), testFactory(t, doSettings), "quick", script(&calls),
			WithCircuitBreakerHook(func(r *http.Request) bool { seen = append(seen, r); return true }))
		if !errors.Is(err, ErrCircuitOpen) || calls != 0 {
			t.Fatalf("got %v after %d calls, want ErrCircuitOpen before any", err, calls)
		}
		if len(seen) != 1 || seen[0] != nil {
			t.Fatalf("hook saw %v, want one nil request", seen)
		}
	})
	t.Run("open before a retry", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			calls, consults := 0, 0
			start := time.Now()
			err := Do(context.Background(), testFactory(t, doSettings), "slow", script(&calls, mkReset(), mkReset()),
				WithCircuitBreakerHook(func(*http.Request) bool { consults++; return consults > 1 }))
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != ReasonCircuitOpen || !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("got %#v, want a RetryError matching ErrCircuitOpen and the reset", err)
			}
			if calls != 1 || time.Since(start) != 0 {
				t.Errorf("%d calls, slept %v; want 1 call and no sleep", calls, time.Since(start))
			}
		})
	})
}

func TestDoUserClass(t *testing.T) {
	f, err := loadWithClasses(t, userClassSettings, teapot, quota, shortQuota)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := Do(context.Background(), f, "quotas", script(&calls, errQuota, errQuota)); err != nil || calls != 3 {
		t.Fatalf("got %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	if err := Do(context.Background(), f, "connections", script(&calls, errQuota)); err != errQuota || calls != 1 {
		t.Fatalf("got %v after %d calls, want the unlisted user class unchanged after 1", err, calls)
	}
}

func TestRetrierPermanentAndWithPolicy(t *testing.T) {
	f := testFactory(t, quick+"[default.resilience.retry.policies.five]\nattempts = 5\nwait_min_seconds = 0.001\nwait_max_seconds = 0.001\nexceptions = [\"HTTPException\"]\n")
	r := NewRetrier(f, "quick")
	reset := (netOpError{}).err()

	calls := 0
	err := r.Do(t.Context(), func(context.Context) error { calls++; return Permanent(reset) })
	if calls != 1 || err != reset {
		t.Errorf("Permanent: %d calls, err %v (want the cause itself, unwrapped)", calls, err)
	}
	wrapped := fmt.Errorf("saving: %w", Permanent(reset))
	calls = 0
	err = r.Do(t.Context(), func(context.Context) error { calls++; return wrapped })
	if calls != 1 || err != wrapped || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("wrapped Permanent: %d calls, err %v", calls, err)
	}

	calls = 0
	err = r.Do(WithPolicy(t.Context(), "five"), func(context.Context) error { calls++; return reset })
	var re *RetryError
	if calls != 5 || !errors.As(err, &re) || re.Policy != "five" {
		t.Errorf("WithPolicy: %d calls, err %v", calls, err)
	}
	if err := r.Do(WithPolicy(t.Context(), "nope"), func(context.Context) error { t.Error("called"); return nil }); err == nil {
		t.Error("an unknown policy name must fail before fn is called")
	}
}

// A Retrier's budget stops a loop of failing calls from storming: its
// upstream is the operation.
func TestRetrierBudget(t *testing.T) {
	doc := fmt.Sprintf(budgetPolicy, "budget_ratio = 0.1\nbudget_min_retries_per_sec = 0.1")
	r := NewRetrier(testFactory(t, doc), "p", WithOperationName("inventory"))
	calls := 0
	for range 100 {
		r.Do(t.Context(), func(context.Context) error { calls++; return (netOpError{}).err() })
	}
	if amp := float64(calls) / 100; amp > 1.2 {
		t.Errorf("amplification %.2f: the Retrier's budget did not hold", amp)
	}
}

// A plain error is an Exception: retried by a policy that lists it (or
// nothing narrower), never by one listing only HTTP classes.
func TestRetrierRetriesPlainErrorsUnderException(t *testing.T) {
	f := testFactory(t, quick+`
[default.resilience.retry.policies.any]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.001
exceptions = ["Exception"]
`)
	plain := errors.New("backend said try again")
	calls := 0
	err := NewRetrier(f, "any").Do(t.Context(), func(context.Context) error { calls++; return plain })
	var re *RetryError
	if calls != 3 || !errors.As(err, &re) || re.Class != policy.Exception || !errors.Is(err, plain) {
		t.Errorf("under Exception: %d calls, err %v", calls, err)
	}
	calls = 0
	err = NewRetrier(f, "quick").Do(t.Context(), func(context.Context) error { calls++; return plain })
	if calls != 1 || err != plain {
		t.Errorf("under HTTPException: %d calls, err %v (want the error as is)", calls, err)
	}
	calls = 0
	err = Do(t.Context(), f, "any", func(context.Context) error {
		if calls++; calls < 3 {
			return plain
		}
		return nil
	})
	if calls != 3 || err != nil {
		t.Errorf("rtx.Do: %d calls, err %v", calls, err)
	}
}
