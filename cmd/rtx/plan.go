package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/athomic-go/rtx/policy"
)

// width is the terminal width plan's output fits in.
const width = 80

type planFlags struct {
	policy  string
	svg     string
	png     string
	maxWait time.Duration
}

func newPlanCmd(sf *settingsFlags) *cobra.Command {
	var pf planFlags
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show each policy's delays, time to give up and what it retries",
		Long: `plan shows, for each retry policy of the settings file (or the one named by
--policy), what it does to a request that keeps failing:

  - per retry, the delay before it: minimum, median and maximum, exact from
    the delay formula
        base_n  = min(wait_max, wait_min * backoff^(n-1))
        delay_n = max(wait_min, base_n * (1 - jitter*U)),  U uniform on [0,1)
  - the cumulative time at which each retry starts and the policy gives up:
    best (attempts fail at once, shortest delays), typical (attempts fail at
    once, median delays: a sum of medians) and worst (every attempt runs to
    timeout_seconds, longest delays). With no timeout_seconds the attempts'
    own time cannot be bounded: worst then counts delays only, marked *.
  - the classes it retries, each expanded into the classes below it, and
    when POST and other non-idempotent requests are retried.
  - for a policy that hedges (hedge_delay_seconds > 0): when a hedge is
    sent, how many copies of a slow request go out at once and in all, the
    worst-case extra load (attempts-1 extra attempts per request, capped
    across requests by the retry budget) and the expected one.
  - check's findings for the policy.

--svg and --png also draw it: per policy the delay band of each retry
(min..max, median marked), the cumulative time to give up (best, typical,
worst) on a logarithmic time axis, the hedging lines and check's findings.`,
		Example: `  rtx plan --config settings.toml
  rtx plan --config settings.toml --env production --policy fast_retry
  rtx plan --config settings.toml --svg plan.svg --png plan.png`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd, sf, &pf)
		},
	}
	cmd.Flags().StringVarP(&pf.policy, "policy", "p", "", "show only this policy (\"default\" for default_policy)")
	cmd.Flags().StringVar(&pf.svg, "svg", "", "also draw the plan as SVG into this file")
	cmd.Flags().StringVar(&pf.png, "png", "", "also draw the plan as PNG into this file")
	cmd.Flags().DurationVar(&pf.maxWait, "max-wait", 60*time.Second, "no-timeout lint threshold")
	return cmd
}

func runPlan(cmd *cobra.Command, sf *settingsFlags, pf *planFlags) error {
	out := cmd.OutOrStdout()
	f, err := sf.load()
	if err != nil {
		printFindings(out, loadFindings(err))
		return failed(err)
	}
	snap := f.Snapshot()
	names, err := selectNames(snap, pf.policy)
	if err != nil {
		return err
	}
	var scheds []schedule
	for _, n := range names {
		p, err := snap.Policy(n)
		if err != nil {
			return err
		}
		scheds = append(scheds, newSchedule(n, p))
	}
	writePlanHeader(out, sf, snap)
	rows := make([]chartRow, 0, len(scheds))
	for _, s := range scheds {
		fmt.Fprintln(out)
		writePolicyPlan(out, snap.Classes(), s)
		fs := lintPolicy(snap.Source(), s.Name, s.Policy, lintOptions{MaxWait: pf.maxWait})
		for _, f := range fs {
			fmt.Fprint(out, wrap(f.Message+" ["+f.Check+"]", "  "+f.Severity.String()+": ", "    ", width))
		}
		rows = append(rows, chartRow{Schedule: s, Findings: fs})
	}
	caption := fmt.Sprintf("rtx plan: settings %s, environment %s", snap.Source(), sf.envName())
	for _, pic := range []struct{ path, format string }{{pf.svg, "svg"}, {pf.png, "png"}} {
		if pic.path == "" {
			continue
		}
		if err := writeChartFile(pic.path, pic.format, caption, rows); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "rtx: wrote %s\n", pic.path)
	}
	return nil
}

// selectNames returns the policies to show: all of them, "default" first,
// or the one named (an unknown name is an error listing the known ones).
func selectNames(snap *policy.Snapshot, name string) ([]string, error) {
	if name == "" {
		return snap.Names(), nil
	}
	if _, err := snap.Policy(name); err != nil {
		return nil, err
	}
	return []string{name}, nil
}

func writePlanHeader(w io.Writer, sf *settingsFlags, snap *policy.Snapshot) {
	fmt.Fprintf(w, "settings %s, environment %s\n", snap.Source(), sf.envName())
	switch {
	case snap.Mode() == policy.Mesh:
		fmt.Fprint(w, wrap("deployment_mode = \"mesh\": the mesh retries, so every policy is one attempt.", "", "", width))
	case !snap.Enabled():
		fmt.Fprint(w, wrap("retries are disabled (enabled = false): every policy is one attempt.", "", "", width))
	}
}

// writePolicyPlan writes one policy's block: its settings, the classes it
// retries, the POST rule and the table of retries.
func writePolicyPlan(w io.Writer, classes *policy.Classes, s schedule) {
	p := s.Policy
	timeout := "no timeout"
	if p.Timeout > 0 {
		timeout = "timeout " + fmtDur(p.Timeout) + " per attempt"
	}
	fmt.Fprint(w, wrap(fmt.Sprintf("%s: %s, wait %s..%s, backoff %s, %s, %s",
		s.Name, plural(p.Attempts, "attempt"), fmtDur(p.WaitMin), fmtDur(p.WaitMax),
		fmtNum(p.Backoff), jitterText(p.Jitter), timeout), "", "  ", width))
	const label = "  %-13s"
	line := func(key, text string) {
		fmt.Fprint(w, wrap(text, fmt.Sprintf(label, key), strings.Repeat(" ", 15), width))
	}
	line("retries", retriedClasses(classes, p))
	if nr := notRetried(classes, p); nr != "" {
		line("not retried", nr)
	}
	line("statuses", statusRetries(p))
	line("POST, PATCH", postRetries(p))
	for _, n := range hedgeNotes(p) {
		line(n.Key, n.Text)
	}
	if len(s.Steps) == 0 {
		fmt.Fprintln(w, "  one attempt: no retries, gives up when it fails.")
		return
	}
	mark := ""
	if s.Unbounded {
		mark = "*"
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %5s %29s   %29s", "", center("delay before retry n", 29), center("time until retry n starts", 29)), " "))
	fmt.Fprintf(w, "  %5s %9s %9s %9s   %9s %9s %9s\n", "retry", "min", "median", "max", "best", "typical", "worst")
	for _, st := range s.Steps {
		fmt.Fprintf(w, "  %5d %9s %9s %9s   %9s %9s %9s%s\n", st.Retry,
			fmtDur(st.Min), fmtDur(st.Median), fmtDur(st.Max),
			fmtDur(st.Best), fmtDur(st.Typical), fmtDur(st.Worst), mark)
	}
	fmt.Fprintf(w, "  %-35s   %9s %9s %9s%s\n", "gives up after",
		fmtDur(s.GiveUpBest), fmtDur(s.GiveUpTypical), fmtDur(s.GiveUpWorst), mark)
	if s.Unbounded {
		fmt.Fprint(w, wrap(fmt.Sprintf("attempt time not counted: with no timeout_seconds each of the %s "+
			"can last as long as the server keeps it open.", plural(p.Attempts, "attempt")), "  * ", "    ", width))
	}
}

// center pads s with spaces to width n, s in the middle.
func center(s string, n int) string {
	pad := n - len(s)
	if pad <= 0 {
		return s
	}
	return strings.Repeat(" ", pad/2) + s + strings.Repeat(" ", pad-pad/2)
}

// printFindings writes findings one per paragraph, wrapped.
func printFindings(w io.Writer, fs []finding) {
	for _, f := range fs {
		fmt.Fprint(w, wrap(f.String(), "", "    ", width))
	}
}
