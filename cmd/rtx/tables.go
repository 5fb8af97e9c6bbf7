package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/viper"

	"github.com/athomic-go/rtx/policy"
)

// A layer is one environment's resilience tables as the settings file has
// them: [default.resilience.*], [production.resilience.*], or the seed's
// [resilience.*], which is read as the default layer.
type layer struct {
	// Prefix is the tables' common prefix: "default.resilience",
	// "production.resilience" or "resilience".
	Prefix string
	// Env is the environment the layer belongs to ("default" for the seed's
	// layout).
	Env string
	// Retry and Breaker say whether the retry and circuit_breaker tables
	// are present; Default whether retry has a default_policy table.
	Retry, Breaker, Default bool
	// Policies are the names under retry.policies, sorted.
	Policies []string
	// Read says whether loading the file under the environment in force
	// reads the layer.
	Read bool
}

// settingsTables lists the resilience tables of the settings file at path
// for environment env ("" for the default only), which ones loading it
// reads, and the file's other top-level tables. It is what check reports
// as "read". The file is decoded once more, here, with viper (as
// policy.LoadFile does, with a delimiter that keeps "api.example.com"
// whole); the result is only shown, never used to decide anything.
func settingsTables(path, env string) (layers []layer, others []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType(policy.FormatOf(path))
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, nil, err
	}
	doc := v.AllSettings()
	_, hasDefault := table(doc, "default", "resilience")
	for _, top := range slices.Sorted(maps.Keys(doc)) {
		if top == "resilience" {
			res, _ := table(doc, "resilience")
			l := newLayer("resilience", "default", res)
			l.Read = !hasDefault // the seed's layout is the default layer when the file has no [default.resilience]
			layers = append(layers, l)
			continue
		}
		res, ok := table(doc, top, "resilience")
		if !ok {
			others = append(others, top)
			continue
		}
		l := newLayer(top+".resilience", top, res)
		l.Read = top == "default" || top == env
		layers = append(layers, l)
	}
	// The default layer first, then the environments by name.
	slices.SortStableFunc(layers, func(a, b layer) int {
		if (a.Env == "default") != (b.Env == "default") {
			if a.Env == "default" {
				return -1
			}
			return 1
		}
		return 0
	})
	return layers, others, nil
}

func newLayer(prefix, env string, res map[string]any) layer {
	l := layer{Prefix: prefix, Env: env}
	if retry, ok := table(res, "retry"); ok {
		l.Retry = true
		_, l.Default = table(retry, "default_policy")
		if ps, ok := table(retry, "policies"); ok {
			l.Policies = slices.Sorted(maps.Keys(ps))
		}
	}
	_, l.Breaker = table(res, "circuit_breaker")
	return l
}

// table walks doc down the keys and returns the table found there.
func table(doc map[string]any, keys ...string) (map[string]any, bool) {
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// envInForce is the environment the settings are read for: --env, else
// RTX_ENV, else "" (the default layer only).
func (s *settingsFlags) envInForce() string {
	if s.env != "" {
		return s.env
	}
	return os.Getenv("RTX_ENV")
}

// writeTables reports which tables of the settings file were read, one
// line per layer, for check. A file with no resilience table at all gets
// a line naming the tables it has, since every policy then is the
// built-in default.
func writeTables(w io.Writer, sf *settingsFlags) {
	env := sf.envInForce()
	layers, others, err := settingsTables(sf.config, env)
	if err != nil {
		return // the load error already says why
	}
	fmt.Fprintf(w, "%s, environment %s:\n", sf.config, sf.envName())
	for _, l := range layers {
		var tables []string
		if l.Retry {
			t := "[" + l.Prefix + ".retry]"
			var sub []string
			if l.Default {
				sub = append(sub, "default_policy")
			}
			if len(l.Policies) > 0 {
				sub = append(sub, "policies "+strings.Join(l.Policies, ", "))
			}
			if len(sub) > 0 {
				t += " (" + strings.Join(sub, "; ") + ")"
			}
			tables = append(tables, t)
		}
		if l.Breaker {
			tables = append(tables, "["+l.Prefix+".circuit_breaker]")
		}
		if len(tables) == 0 {
			tables = append(tables, "["+l.Prefix+"] (no retry or circuit_breaker table)")
		}
		var state string
		switch {
		case !l.Read && l.Prefix == "resilience":
			state = "not read, the file has [default.resilience]: "
		case !l.Read:
			state = "not read, for --env " + l.Env + ": "
		case l.Prefix == "resilience":
			state = "read as [default]: "
		default:
			state = "read: "
		}
		fmt.Fprint(w, wrap(state+strings.Join(tables, ", "), "  ", "    ", width))
	}
	if len(layers) == 0 {
		found := "no tables"
		if len(others) > 0 {
			found = "tables [" + strings.Join(others, "], [") + "]"
		}
		fmt.Fprint(w, wrap("no [default.resilience.*] or [resilience.*] tables (the file has "+found+
			"): every policy is the built-in default", "  ", "    ", width))
	}
}
