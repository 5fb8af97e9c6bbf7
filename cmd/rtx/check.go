package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

type checkFlags struct {
	strict  bool
	maxWait time.Duration
}

func newCheckCmd(sf *settingsFlags) *cobra.Command {
	var cf checkFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Lint a settings file: load errors and risky retry policies",
		Long: `check loads the settings file as the transport would and reports, one per
finding:

  errors (exit status 1)
    load      every load error: each names the file, the policy and the field
  warnings (exit status 1 with --strict, else 0)
    no-timeout          no timeout_seconds and the longest delays alone add
                        up to more than --max-wait: a caller can be held far
                        longer than that, attempts hanging included
    no-jitter           jitter = 0: clients that failed together retry in step
    backoff-unused      backoff > 1 with wait_min_seconds = wait_max_seconds
    capped              the delays reach wait_max before the last retry, so
                        the retries from there on all wait up to the cap: the
                        tail of the schedule is a fixed-interval poll
    non-idempotent-all  retry_non_idempotent = true with HTTPException: POSTs
                        are retried after timeouts and 5xx, and may run twice

Policies are checked as requests get them: in mesh mode or with retries
disabled every policy is one attempt and has nothing to warn about. Use
--env to check an environment's overlay. Exit status 2 means bad usage.`,
		Example: `  rtx check --config settings.toml
  rtx check --config settings.toml --env production --strict --max-wait 2m`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd, sf, &cf)
		},
	}
	cmd.Flags().BoolVar(&cf.strict, "strict", false, "exit with status 1 on warnings too")
	cmd.Flags().DurationVar(&cf.maxWait, "max-wait", 60*time.Second, "no-timeout lint threshold")
	return cmd
}

func runCheck(cmd *cobra.Command, sf *settingsFlags, cf *checkFlags) error {
	out := cmd.OutOrStdout()
	var fs []finding
	f, err := sf.load()
	if err != nil {
		fs = loadFindings(err)
	} else {
		snap := f.Snapshot()
		writeTables(out, sf, snap)
		fs, err = lintSnapshot(snap, snap.Names(), lintOptions{MaxWait: cf.maxWait})
		if err != nil {
			return err
		}
	}
	printFindings(out, fs)
	errs, warns := count(fs)
	fmt.Fprintf(out, "%s: %s, %s\n", sf.config, plural(errs, "error"), plural(warns, "warning"))
	if errs > 0 || (cf.strict && warns > 0) {
		return failed(errFindings)
	}
	return nil
}
