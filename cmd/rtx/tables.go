package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/athomic-go/rtx/policy"
)

// maxProbed is how many of the file's other top-level tables check loads
// as environments to say what --env would change; it names the rest.
const maxProbed = 10

// writeTables reports, for check, how the settings were read, from the
// snapshot's Layout: the layers merged (the default one, the environment's,
// RTX_ variables), the policies and circuit breaker they give, and, for each
// of the file's other top-level tables, what it changes over the default
// layer when --env names it. A file with no resilience table gets a line naming the tables it
// has, since every policy then is the built-in default.
func writeTables(w io.Writer, sf *settingsFlags, snap *policy.Snapshot) {
	lay := snap.Layout()
	line := func(text string) { fmt.Fprint(w, wrap(text, "  ", "    ", width)) }
	fmt.Fprintf(w, "%s, environment %s:\n", sf.config, sf.envName())
	if lay.Resilience {
		line("read: " + layersText(lay))
		line(policiesText(snap))
		line(breakerText(snap))
	} else {
		found := "no tables"
		if len(lay.Tables) > 0 {
			found = "tables [" + strings.Join(lay.Tables, "], [") + "]"
		}
		line("no [default.resilience.*] or [resilience.*] tables (the file has " + found +
			"): every policy is the built-in default")
	}

	var others []string
	for _, t := range lay.Tables {
		if t != "default" && t != "resilience" && t != lay.Env {
			others = append(others, t)
		}
	}
	// What an environment changes is counted from the default layer alone.
	base := snap
	if lay.Env != "" {
		f, err := policy.LoadFile(sf.config, policy.WithEnv(""))
		if err != nil {
			return // the default layer alone does not load: the environment's tables cannot be compared
		}
		base = f.Snapshot()
	}
	var envs, inert []string
	for i, t := range others {
		if i == maxProbed {
			inert = append(inert, fmt.Sprintf("and %d more, not tried", len(others)-maxProbed))
			break
		}
		switch changed, err := probeEnv(sf, t, base); {
		case err != nil:
			envs = append(envs, fmt.Sprintf("[%s] (does not load: %s; see rtx check --env %s)", t, plural(len(loadFindings(err)), "error"), t))
		case len(changed) > 0:
			envs = append(envs, fmt.Sprintf("[%s] (changes %s)", t, strings.Join(changed, ", ")))
		default:
			inert = append(inert, "["+t+"]")
		}
	}
	if len(envs) > 0 {
		line("not read: " + strings.Join(envs, ", "))
	}
	if len(inert) > 0 && lay.Resilience {
		line("other tables, which change nothing: " + strings.Join(inert, ", "))
	}
}

// layersText names the layers merged, in order: "[default], then
// [production], then environment variables RTX_...".
func layersText(lay policy.Layout) string {
	var parts []string
	for _, l := range lay.Layers {
		switch l {
		case "top level":
			parts = append(parts, "the top-level [resilience] tables, as [default]")
		case "environment variables":
			parts = append(parts, "environment variables "+strings.Join(lay.EnvVars, ", "))
		default:
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, ", then ")
}

// policiesText names the policies the layers give, the default one marked
// when its values are the built-in ones, or says when the mode makes every
// policy one attempt.
func policiesText(snap *policy.Snapshot) string {
	names := snap.Names()
	switch {
	case snap.Mode() == policy.Mesh:
		return "policies: " + strings.Join(names, ", ") + " (deployment_mode = \"mesh\": one attempt each)"
	case !snap.Enabled():
		return "policies: " + strings.Join(names, ", ") + " (enabled = false: one attempt each)"
	case !slices.Contains(snap.Changed(policy.Builtin()), "default"):
		names[0] = "default (built-in values)"
	}
	return "policies: " + strings.Join(names, ", ")
}

// breakerText describes the circuit breaker the layers give.
func breakerText(snap *policy.Snapshot) string {
	b := snap.Breaker()
	switch {
	case !b.Enabled && snap.Mode() == policy.Mesh:
		return "circuit breaker: passes everything through (mesh)"
	case !b.Enabled:
		return "circuit breaker: off"
	}
	text := fmt.Sprintf("circuit breaker: opens after %s in a row, for %s",
		plural(int(b.FailMax), "failure"), fmtDur(b.ResetTimeout))
	if len(b.Circuits) > 0 {
		text += "; circuits " + strings.Join(slices.Sorted(maps.Keys(b.Circuits)), ", ")
	}
	return text
}

// probeEnv loads the settings file as --env table would, and returns what
// that changes from base, the default layer's snapshot: the policies and
// "circuit_breaker".
func probeEnv(sf *settingsFlags, table string, snap *policy.Snapshot) ([]string, error) {
	f, err := policy.LoadFile(sf.config, policy.WithEnv(table))
	if err != nil {
		return nil, err
	}
	return f.Snapshot().Changed(snap), nil
}
