package main

import (
	"fmt"

	"github.com/athomic-go/rtx/policy"
)

// Hedging figures rtx uses, shown by plan. They mirror the transport's own
// constants, which it does not export.
const (
	// hedgeMinSamples is how many answered attempts the quantile delay
	// needs: below it, hedge_delay_seconds is the delay.
	hedgeMinSamples = 100
	// hedgeLoadFactor bounds the expected hedges of a quantile policy at
	// this times (1 - hedge_quantile) of attempts.
	hedgeLoadFactor = 1.5
)

// A hedgeNote is one line of plan's account of a hedging policy: a key
// ("hedge after") and its text.
type hedgeNote struct{ Key, Text string }

// hedgeNotes describes what a hedging policy sends, and when: the delay, the
// copies of a slow request, and the worst-case and expected extra load. It
// returns nothing for a policy that does not hedge.
func hedgeNotes(p *policy.Policy) []hedgeNote {
	if !p.Hedges() {
		return nil
	}
	floor := fmtDur(p.HedgeDelay)
	after := floor + " without an answer"
	if p.HedgeQuantile > 0 {
		after = fmt.Sprintf("the %s quantile of the upstream's recent answered-attempt latencies, at least %s; %s until %d samples",
			fmtNum(p.HedgeQuantile), floor, floor, hedgeMinSamples)
	}
	a := p.Attempts
	copies := fmt.Sprintf("up to %d copies of a slow request at once and %d in all (max_hedges %d), "+
		"for requests it may retry; the first answer it would not retry wins, the others are cancelled",
		min(a, 1+p.MaxHedges), a, p.MaxHedges)

	worst := fmt.Sprintf("%dx extra attempts per request, hedges and retries together (a slow answer is enough); ", a-1)
	if p.BudgetRatio < 0 {
		worst += "no retry budget (budget_ratio = -1): nothing caps them across requests"
	} else {
		worst += fmt.Sprintf("the retry budget caps them at %s%% of the policy's first attempts to the upstream over any %s",
			trimFloat(100*p.BudgetRatio, 2), fmtDur(p.BudgetWindow))
		if p.BudgetMinRetriesPerSec > 0 {
			worst += fmt.Sprintf(", plus %s a second", fmtNum(p.BudgetMinRetriesPerSec))
		}
	}

	var expected string
	if q := p.HedgeQuantile; q > 0 {
		bound := trimFloat(100*hedgeLoadFactor*(1-q), 2) + "%"
		expected = fmt.Sprintf("about %s%% of attempts hedged (1-%s), kept under %s (%s x (1-%s)): rtx raises "+
			"the quantile as stragglers (slow attempts a hedge beat) grow, unless they alone pass %s (then they are all hedged, within the budget)",
			trimFloat(100*(1-q), 2), fmtNum(q), bound, fmtNum(hedgeLoadFactor), fmtNum(q), bound)
	} else {
		expected = "a hedge for each attempt unanswered after " + floor
		if p.MaxHedges > 1 {
			expected += fmt.Sprintf(", another after each further %s, up to %d", floor, p.MaxHedges)
		}
	}
	return []hedgeNote{{"hedge after", after}, {"hedges", copies}, {"worst load", worst}, {"expected", expected}}
}
