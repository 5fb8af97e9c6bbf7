package policy

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	policyKeys = []string{
		"attempts", "wait_min_seconds", "wait_max_seconds", "backoff", "jitter",
		"timeout_seconds", "exceptions", "retry_non_idempotent", "idempotency_key",
		"budget_ratio", "budget_min_retries_per_sec", "budget_window_seconds",
		"hedge_delay_seconds", "hedge_quantile", "max_hedges",
	}
	retryKeys   = []string{"enabled", "default_policy", "policies"}
	breakerKeys = []string{"enabled", "default_fail_max", "default_reset_timeout_sec", "circuits"}
	circuitKeys = []string{"fail_max", "reset_timeout_sec"}
)

// maxErrors is how many problems a load error lists; it says how many more
// there are.
const maxErrors = 20

// maxSeconds bounds every duration setting so that it fits a time.Duration.
const maxSeconds = float64(math.MaxInt64/int64(time.Second)) / 2

// compile validates a merged settings document and builds the snapshot.
// Every problem found is reported, joined, in a stable order.
func compile(source string, doc map[string]any, classes *Classes, lay Layout) (*Snapshot, error) {
	c := &compiler{source: source, classes: classes}
	lay.read = true
	s := &Snapshot{source: source, layout: lay, mode: Standalone, enabled: true, classes: classes, policies: map[string]*Policy{}}

	if v, ok := doc["deployment_mode"]; ok {
		before := len(c.errs)
		mode := strings.ToLower(c.str("deployment_mode", "deployment_mode", v))
		switch {
		case mode == Standalone || mode == Mesh:
			s.mode = mode
		case len(c.errs) == before:
			c.fail("deployment_mode", "must be %q or %q, got %s", Standalone, Mesh, describe(v))
		}
	}
	res, _ := doc["resilience"].(map[string]any)
	retry := c.table("[resilience.retry]", "retry", res["retry"])
	c.unknown("[resilience.retry]", retry, retryKeys)
	if v, ok := retry["enabled"]; ok {
		s.enabled = c.boolean("[resilience.retry]", "enabled", v)
	}
	s.def = c.policy("default_policy", "", c.table("default_policy", "default_policy", retry["default_policy"]))
	pols := c.table("[resilience.retry.policies]", "policies", retry["policies"])
	for _, name := range slices.Sorted(maps.Keys(pols)) {
		where := fmt.Sprintf("retry policy %q", name)
		if name == "default" {
			c.fail(where, "the name is reserved for default_policy")
			continue
		}
		s.policies[name] = c.policy(where, name, c.table(where, name, pols[name]))
	}
	if v, ok := res["circuit_breaker"]; ok {
		s.breaker = c.breaker(c.table("[resilience.circuit_breaker]", "circuit_breaker", v))
		if s.mode == Mesh {
			s.breaker.Enabled = false
		}
	}
	if len(c.errs) > maxErrors {
		more := len(c.errs) - maxErrors
		c.errs = append(c.errs[:maxErrors:maxErrors], fmt.Errorf("%s: and %d more problems", source, more))
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	s.finish()
	return s, nil
}

type compiler struct {
	source  string
	classes *Classes
	errs    []error
}

func (c *compiler) fail(where, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s: %s", c.source, where, fmt.Sprintf(format, args...)))
}

// table returns v as a table; nil (absent) is an empty table.
func (c *compiler) table(where, key string, v any) map[string]any {
	switch t := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return t
	}
	c.fail(where, "%s must be a table, got %s", key, describe(v))
	return nil
}

func (c *compiler) unknown(where string, t map[string]any, known []string) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if !slices.Contains(known, k) {
			c.fail(where, "unknown key %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
}

func describe(v any) string {
	switch t := v.(type) {
	case envValue:
		return fmt.Sprintf("%q from %s", t.value, t.name)
	case string:
		return fmt.Sprintf("%q", t)
	case map[string]any:
		return "a table"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v", v)
}

func (c *compiler) number(where, key string, v any) (float64, bool) {
	switch t := v.(type) {
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case uint64:
		return float64(t), true
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			break
		}
		return t, true
	case envValue:
		f, err := strconv.ParseFloat(strings.TrimSpace(t.value), 64)
		if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, true
		}
	}
	c.fail(where, "%s must be a number, got %s", key, describe(v))
	return 0, false
}

func (c *compiler) integer(where, key string, v any) (int64, bool) {
	f, ok := c.number(where, key, v)
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		c.fail(where, "%s must be a whole number, got %s", key, describe(v))
		return 0, false
	}
	return int64(f), true
}

func (c *compiler) seconds(where, key string, v any) (time.Duration, bool) {
	f, ok := c.number(where, key, v)
	if !ok {
		return 0, false
	}
	if f < 0 {
		c.fail(where, "%s must be >= 0, got %v", key, f)
		return 0, false
	}
	if f > maxSeconds {
		c.fail(where, "%s (%v) is too large", key, f)
		return 0, false
	}
	d := time.Duration(f * float64(time.Second))
	if f > 0 && d == 0 {
		c.fail(where, "%s (%v) is below 1ns: use 0 or a larger value", key, f)
		return 0, false
	}
	return d, true
}

// atLeastMillisecond checks a duration where 0 means "off" and anything
// shorter than a millisecond would be taken for "off" or fire at once.
func (c *compiler) atLeastMillisecond(where, key string, d time.Duration, v any) {
	if d > 0 && d < time.Millisecond {
		c.fail(where, "%s must be 0 (off) or at least 0.001 (1 ms), got %s", key, describe(v))
	}
}

func (c *compiler) boolean(where, key string, v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case envValue:
		if b, err := strconv.ParseBool(strings.TrimSpace(t.value)); err == nil {
			return b
		}
	}
	c.fail(where, "%s must be true or false, got %s", key, describe(v))
	return false
}

func (c *compiler) str(where, key string, v any) string {
	switch t := v.(type) {
	case string:
		return t
	case envValue:
		return t.value
	}
	c.fail(where, "%s must be a string, got %s", key, describe(v))
	return ""
}

func (c *compiler) strings(where, key string, v any) []string {
	switch t := v.(type) {
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				c.fail(where, "%s must be a list of class names, got %s in it", key, describe(e))
				return nil
			}
			out = append(out, s)
		}
		return out
	case []string:
		return slices.Clone(t)
	case envValue: // comma-separated
		var out []string
		for _, s := range strings.Split(t.value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	c.fail(where, "%s must be a list of class names, got %s", key, describe(v))
	return nil
}

// policy decodes one policy table over the built-in defaults and validates it.
func (c *compiler) policy(where, name string, t map[string]any) *Policy {
	p := Default()
	p.Name = name
	c.unknown(where, t, policyKeys)
	waitsOK := true // both waits decoded and in range: compare them
	hedgesSet := false
	for _, k := range slices.Sorted(maps.Keys(t)) {
		v := t[k]
		switch k {
		case "attempts":
			if n, ok := c.integer(where, k, v); ok {
				if n < 1 || n > MaxAttempts {
					c.fail(where, "attempts must be between 1 and %d, got %d", MaxAttempts, n)
				}
				p.Attempts = int(n)
			}
		case "wait_min_seconds":
			d, ok := c.seconds(where, k, v)
			if ok && d <= 0 {
				c.fail(where, "wait_min_seconds must be > 0, got %s", describe(v))
				ok = false
			}
			p.WaitMin, waitsOK = d, waitsOK && ok
		case "wait_max_seconds":
			d, ok := c.seconds(where, k, v)
			p.WaitMax, waitsOK = d, waitsOK && ok
		case "backoff":
			if f, ok := c.number(where, k, v); ok {
				if f < 1 || f > 1000 {
					c.fail(where, "backoff must be between 1 and 1000, got %v", f)
				}
				p.Backoff = f
			}
		case "jitter":
			if f, ok := c.number(where, k, v); ok {
				if f < 0 || f > 1 {
					c.fail(where, "jitter must be between 0 and 1, got %v", f)
				}
				p.Jitter = f
			}
		case "timeout_seconds":
			if d, ok := c.seconds(where, k, v); ok {
				c.atLeastMillisecond(where, k, d, v)
				p.Timeout = d
			}
		case "hedge_delay_seconds":
			if d, ok := c.seconds(where, k, v); ok {
				c.atLeastMillisecond(where, k, d, v)
				p.HedgeDelay = d
			}
		case "hedge_quantile":
			if f, ok := c.number(where, k, v); ok {
				if f != 0 && !(f > 0 && f < 1) {
					c.fail(where, "hedge_quantile must be 0 (off) or between 0 and 1 exclusive, got %v", f)
				}
				p.HedgeQuantile = f
			}
		case "max_hedges":
			if n, ok := c.integer(where, k, v); ok {
				if n < 0 || n > MaxAttempts {
					c.fail(where, "max_hedges must be between 0 and %d, got %d", MaxAttempts-1, n)
				} else {
					p.MaxHedges = int(n)
				}
				hedgesSet = true
			}
		case "exceptions":
			p.Exceptions = c.strings(where, k, v)
			for _, e := range p.Exceptions {
				if !c.classes.Known(e) {
					c.fail(where, "exceptions: unknown class %q (known: %s)", e, listShort(c.classes.Names(), maxListed))
				}
			}
		case "retry_non_idempotent":
			p.RetryNonIdempotent = c.boolean(where, k, v)
		case "idempotency_key":
			p.IdempotencyKey = c.boolean(where, k, v)
		case "budget_ratio":
			if f, ok := c.number(where, k, v); ok {
				if f != -1 && (f < 0 || f > 1) {
					c.fail(where, "budget_ratio must be between 0 and 1, or -1 to turn the budget off, got %v", f)
				}
				p.BudgetRatio = f
			}
		case "budget_min_retries_per_sec":
			if f, ok := c.number(where, k, v); ok {
				if f < 0 {
					c.fail(where, "budget_min_retries_per_sec must be >= 0, got %v", f)
				}
				p.BudgetMinRetriesPerSec = f
			}
		case "budget_window_seconds":
			if d, ok := c.seconds(where, k, v); ok {
				if d <= 0 {
					c.fail(where, "budget_window_seconds must be > 0, got %s", describe(v))
				}
				p.BudgetWindow = d
			}
		}
	}
	c.hedging(where, p, t, hedgesSet)
	if waitsOK && p.WaitMin > p.WaitMax {
		c.fail(where, "wait_min_seconds (%v) > wait_max_seconds (%v)", p.WaitMin.Seconds(), p.WaitMax.Seconds())
	}
	p.retries = c.classes.covered(p.Exceptions)
	return p
}

// hedging checks the hedging fields together. Without hedge_delay_seconds
// > 0 the policy does not hedge, and hedge_quantile or max_hedges set to
// anything but 0 is an error (a setting that would be silently ignored).
// With it, max_hedges defaults to 1 and must be 1..attempts-1: every
// attempt counts, hedges included, so there must be one to spare.
func (c *compiler) hedging(where string, p *Policy, t map[string]any, hedgesSet bool) {
	if p.HedgeDelay <= 0 {
		if p.HedgeQuantile != 0 {
			c.fail(where, "hedge_quantile needs hedge_delay_seconds > 0 (its floor)")
		}
		if p.MaxHedges != 0 {
			c.fail(where, "max_hedges needs hedge_delay_seconds > 0")
		}
		p.HedgeQuantile, p.MaxHedges = 0, 0
		return
	}
	if !hedgesSet {
		p.MaxHedges = 1
	}
	if _, ok := t["max_hedges"]; ok && !hedgesSet {
		return // already reported
	}
	if p.MaxHedges < 1 || p.MaxHedges > p.Attempts-1 {
		c.fail(where, "max_hedges must be between 1 and attempts-1 (%d) when hedge_delay_seconds > 0, got %d", p.Attempts-1, p.MaxHedges)
	}
}

// breaker decodes the circuit_breaker table; present means enabled unless
// it says otherwise.
func (c *compiler) breaker(t map[string]any) Breaker {
	const where = "[resilience.circuit_breaker]"
	b := Breaker{Enabled: true, FailMax: 5, ResetTimeout: 30 * time.Second}
	c.unknown(where, t, breakerKeys)
	if v, ok := t["enabled"]; ok {
		b.Enabled = c.boolean(where, "enabled", v)
	}
	if v, ok := t["default_fail_max"]; ok {
		b.FailMax = c.failMax(where, "default_fail_max", v)
	}
	if v, ok := t["default_reset_timeout_sec"]; ok {
		b.ResetTimeout = c.resetTimeout(where, "default_reset_timeout_sec", v)
	}
	circuits := c.table(where, "circuits", t["circuits"])
	if len(circuits) > 0 {
		b.Circuits = make(map[string]Circuit, len(circuits))
	}
	for _, name := range slices.Sorted(maps.Keys(circuits)) {
		cw := fmt.Sprintf("circuit %q", name)
		if strings.TrimSpace(name) == "" {
			c.fail(cw, "circuit name must not be empty")
			continue
		}
		ct := c.table(cw, name, circuits[name])
		c.unknown(cw, ct, circuitKeys)
		cs := Circuit{FailMax: b.FailMax, ResetTimeout: b.ResetTimeout}
		if v, ok := ct["fail_max"]; ok {
			cs.FailMax = c.failMax(cw, "fail_max", v)
		}
		if v, ok := ct["reset_timeout_sec"]; ok {
			cs.ResetTimeout = c.resetTimeout(cw, "reset_timeout_sec", v)
		}
		b.Circuits[name] = cs
	}
	return b
}

func (c *compiler) failMax(where, key string, v any) uint32 {
	n, ok := c.integer(where, key, v)
	if !ok {
		return 0
	}
	if n < 1 || n > math.MaxUint32 {
		c.fail(where, "%s must be >= 1, got %d", key, n)
		return 0
	}
	return uint32(n)
}

func (c *compiler) resetTimeout(where, key string, v any) time.Duration {
	d, ok := c.seconds(where, key, v)
	if ok && d <= 0 {
		c.fail(where, "%s must be > 0, got %s", key, describe(v))
	}
	return d
}
