package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/athomic-go/rtx/policy"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // load errors, check findings, failed requests
	exitUsage   = 2 // bad flags or arguments
)

// exitError carries the process exit code out of a command; main maps it
// with exitCode, so no command calls os.Exit.
type exitError struct {
	code int
	err  error
	// reported means the command already told the user (check's findings):
	// main prints nothing more.
	reported bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a usage mistake (exit code 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// failed marks err as a failure the command already reported (exit code 1).
func failed(err error) error { return &exitError{code: exitFailure, err: err, reported: true} }

// exitCode returns the process exit code for the error a command returned.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailure
}

// report prints err (unless the command already did) to w and returns the
// exit code for it.
func report(err error, w io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) && ee.reported {
		return ee.code
	}
	fmt.Fprintf(w, "rtx: %v\n", err)
	if exitCode(err) == exitUsage {
		fmt.Fprintln(w, "Run 'rtx --help' for usage.")
	}
	return exitCode(err)
}

// settingsFlags are the flags every command shares.
type settingsFlags struct {
	config string
	env    string
}

// load reads the settings file with policy.LoadFile.
func (s *settingsFlags) load() (*policy.Factory, error) {
	var opts []policy.LoadOption
	if s.env != "" {
		opts = append(opts, policy.WithEnv(s.env))
	}
	return policy.LoadFile(s.config, opts...)
}

// envName is the environment the settings are read for, for display.
func (s *settingsFlags) envName() string {
	if s.env != "" {
		return s.env
	}
	if e := os.Getenv("RTX_ENV"); e != "" {
		return e + " (RTX_ENV)"
	}
	return "default"
}

// exactArgs is cobra.ExactArgs with a usage exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError(err)
		}
		return nil
	}
}

// noArgs is cobra.NoArgs with a usage exit code.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError(err)
	}
	return nil
}

// newRootCmd returns the rtx command with its subcommands. Each call
// returns a fresh tree, so tests can run commands side by side.
func newRootCmd() *cobra.Command {
	var sf settingsFlags
	root := &cobra.Command{
		Use:   "rtx",
		Short: "See, check and try rtx retry policies before they ship",
		Long: `rtx reads a settings file the way the rtx transport does (policy.LoadFile)
and shows what its retry policies will do: the delays and the time to give
up (plan), the mistakes worth fixing (check), and one real request sent
through the transport (get).`,
		Example: `  rtx plan --config settings.toml
  rtx check --config settings.toml --strict
  rtx get --config settings.toml --policy fast_retry https://example.com/health`,
		Args:          noArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.PersistentFlags().StringVarP(&sf.config, "config", "c", "settings.toml", "settings file (toml/yaml/json)")
	root.PersistentFlags().StringVar(&sf.env, "env", "", "environment overlaid on [default] (default: $RTX_ENV)")
	root.AddCommand(newPlanCmd(&sf), newCheckCmd(&sf), newGetCmd(&sf))
	return root
}
