package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"
)

// LoadOption configures [LoadFile] and [Factory.Parse].
type LoadOption func(*loadConfig)

type loadConfig struct {
	env      string
	envSet   bool
	environ  func() []string
	classes  []Class
	explicit bool // format given by WithFormat
	format   string
}

// WithEnv names the environment whose table ([production...]) is merged
// over [default]. Without it, the RTX_ENV variable names it; when neither
// is set only [default] is read.
func WithEnv(name string) LoadOption {
	return func(c *loadConfig) { c.env, c.envSet = name, true }
}

// WithEnviron replaces os.Environ as the source of RTX_ variables (and
// RTX_ENV). Each entry is "KEY=value".
func WithEnviron(environ func() []string) LoadOption {
	return func(c *loadConfig) { c.environ = environ }
}

// WithClass registers a user class. Settings may name it in exceptions, and
// rtx matches it before the built-in rules. Classes are registered in the
// order given; a parent must exist before its child.
func WithClass(cl Class) LoadOption {
	return func(c *loadConfig) { c.classes = append(c.classes, cl) }
}

// WithFormat sets the document format ("toml", "yaml", "json") instead of
// taking it from the file's extension.
func WithFormat(format string) LoadOption {
	return func(c *loadConfig) { c.format, c.explicit = format, true }
}

// LoadFile reads, validates and publishes the settings file at path. The
// format comes from the extension (.toml, .yaml, .yml, .json). Every error
// names the file, and where it applies the policy and the field:
//
//	settings.toml: retry policy "fast_retry": wait_min_seconds (2) > wait_max_seconds (1)
func LoadFile(path string, opts ...LoadOption) (*Factory, error) {
	f := &Factory{}
	for _, o := range opts {
		if o != nil {
			o(&f.load)
		}
	}
	if !f.load.explicit {
		f.load.format = FormatOf(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rtx/policy: %w", err)
	}
	s, err := f.Parse(data, f.load.format, path)
	if err != nil {
		return nil, err
	}
	f.snap.Store(s)
	return f, nil
}

// FormatOf returns the settings format for a file name: "yaml" for .yaml and
// .yml, "json" for .json, "toml" otherwise.
func FormatOf(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return "yaml"
	case ".json":
		return "json"
	}
	return "toml"
}

// Format returns the format the factory decodes updates in by default (the
// one its file was read in).
func (f *Factory) Format() string {
	if f.load.format == "" {
		return "toml"
	}
	return f.load.format
}

// Parse decodes and validates a settings document with the factory's load
// options, without publishing it. format "" means [Factory.Format].
func (f *Factory) Parse(data []byte, format, source string) (*Snapshot, error) {
	if format == "" {
		format = f.Format()
	}
	return parse(data, format, source, &f.load)
}

func parse(data []byte, format, source string, lc *loadConfig) (*Snapshot, error) {
	if source == "" {
		source = "settings"
	}
	classes, err := builtinClasses().withUser(lc.classes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	switch format {
	case "toml", "yaml", "json":
	default:
		return nil, fmt.Errorf("%s: unsupported settings format %q (want toml, yaml or json)", source, format)
	}
	// Viper's default key delimiter "." would split circuit names such as
	// "api.example.com"; no settings key contains "::".
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType(format)
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: cannot parse %s: %w", source, format, unwrapViper(err))
	}
	environ := lc.environ
	if environ == nil {
		environ = os.Environ
	}
	env := environ()
	envName := lc.env
	if !lc.envSet {
		envName = lookup(env, "RTX_ENV")
	}
	all := v.AllSettings()
	doc := map[string]any{}
	if d, ok := all["default"].(map[string]any); ok {
		doc = d
	}
	if envName = strings.ToLower(envName); envName != "" && envName != "default" {
		if over, ok := all[envName].(map[string]any); ok {
			doc = merge(doc, over)
		}
	}
	applyEnv(doc, env)
	return compile(source, doc, classes)
}

// unwrapViper drops viper's "While parsing config:" wrapper, keeping the
// decoder's own message (which carries line and column).
func unwrapViper(err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) {
		if u := pe.Unwrap(); u != nil {
			return u
		}
	}
	return err
}

func lookup(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// merge returns base with over merged in key by key (tables recursively).
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = merge(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}

// envValue is a value that came from an environment variable: a string that
// the field decoders parse, and name the variable in errors.
type envValue struct{ name, value string }

// applyEnv sets every RTX_A__B__C variable that names a settings key.
// Variables that name no key are ignored: other tools share the prefix.
func applyEnv(doc map[string]any, env []string) {
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "RTX_") || k == "RTX_ENV" {
			continue
		}
		path := strings.Split(strings.ToLower(strings.TrimPrefix(k, "RTX_")), "__")
		if !settable(path) {
			continue
		}
		m := doc
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
			} else {
				next = merge(next, nil) // copy: tables may be shared with the overlay
			}
			m[p] = next
			m = next
		}
		m[path[len(path)-1]] = envValue{name: k, value: v}
	}
}

// settable reports whether path names a key of the settings layout.
func settable(path []string) bool {
	in := func(s string, set []string) bool {
		for _, x := range set {
			if s == x {
				return true
			}
		}
		return false
	}
	switch {
	case len(path) == 1:
		return path[0] == "deployment_mode"
	case len(path) < 3 || path[0] != "resilience" || slicesHasEmpty(path):
		return false
	case path[1] == "retry":
		switch {
		case len(path) == 3:
			return path[2] == "enabled"
		case len(path) == 4:
			return path[2] == "default_policy" && in(path[3], policyKeys)
		case len(path) == 5:
			return path[2] == "policies" && in(path[4], policyKeys)
		}
	case path[1] == "circuit_breaker":
		switch {
		case len(path) == 3:
			return in(path[2], breakerKeys)
		case len(path) == 5:
			return path[2] == "circuits" && in(path[4], circuitKeys)
		}
	}
	return false
}

func slicesHasEmpty(path []string) bool {
	for _, p := range path {
		if p == "" {
			return true
		}
	}
	return false
}
