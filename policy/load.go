package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
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
	data, err := ReadLimited(path)
	if err != nil {
		return nil, fmt.Errorf("rtx/policy: %w", err)
	}
	s, err := f.Parse(data, f.load.format, path)
	if err != nil {
		return nil, err
	}
	f.state.Store(&state{snap: s, status: Status{Version: 1, Source: s.Source(), Applied: time.Now()}})
	return f, nil
}

// ReadLimited reads the file at path, but no more than one byte past
// [MaxDocumentSize]: enough for [Factory.Parse] to reject a file that is
// too large without holding all of it in memory.
func ReadLimited(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
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
	switch format {
	case "toml", "yaml", "json":
	default:
		return nil, fmt.Errorf("%s: unsupported settings format %q (want toml, yaml or json)", source, format)
	}
	// No parser sees a document over the limits.
	if err := guard(data, format, source); err != nil {
		return nil, err
	}
	return decode(data, format, source, lc)
}

// decode parses a document that passed the guard, merges its layers and
// compiles the snapshot.
func decode(data []byte, format, source string, lc *loadConfig) (*Snapshot, error) {
	classes, err := builtinClasses().withUser(lc.classes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	// Viper's default key delimiter "." would split circuit names such as
	// "api.example.com"; no settings key contains "::".
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType(format)
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, parseError(source, format, data, unwrapViper(err))
	}
	environ := lc.environ
	if environ == nil {
		environ = os.Environ
	}
	env := environ()
	envName, envFrom := lc.env, "WithEnv"
	if !lc.envSet {
		envName, envFrom = lookup(env, "RTX_ENV"), "RTX_ENV"
	}
	all := v.AllSettings()
	lay := Layout{Tables: tablesOf(all)}
	doc := map[string]any{}
	defRes := hasKey(all["default"], "resilience")
	_, rootRes := all["resilience"]
	switch {
	case defRes && rootRes:
		return nil, fmt.Errorf("%s: both [default.resilience] and a top-level [resilience]: keep one layout (top-level tables: %s)",
			source, listShort(lay.Tables, maxListed))
	case rootRes:
		// The seed's own layout: [resilience.*] with no environment level
		// is the [default] layer.
		doc = all
		lay.Layers = append(lay.Layers, "top level")
		lay.Resilience = true
	default:
		if d, ok := all["default"].(map[string]any); ok {
			doc = d
			lay.Layers = append(lay.Layers, "[default]")
		}
		lay.Resilience = defRes
	}
	if envName = strings.ToLower(envName); envName != "" && envName != "default" {
		over, ok := all[envName].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: environment %q (from %s) has no table in the file (environments: %s)",
				source, envName, envFrom, listShort(environments(all), maxListed))
		}
		doc = merge(doc, over)
		lay.Env = envName
		lay.Layers = append(lay.Layers, "["+envName+"]")
		lay.Resilience = lay.Resilience || hasKey(over, "resilience")
	}
	lay.EnvVars = applyEnv(doc, env)
	if len(lay.EnvVars) > 0 {
		lay.Layers = append(lay.Layers, "environment variables")
	}
	return compile(source, doc, classes, lay)
}

// hasKey reports whether v is a table holding key.
func hasKey(v any, key string) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[key]
	return ok
}

// tablesOf returns the names of the document's top-level tables, sorted.
func tablesOf(all map[string]any) []string {
	var out []string
	for k, v := range all {
		if _, ok := v.(map[string]any); ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// environments returns the environments a document offers: "default" and
// every top-level table but the settings' own sections.
func environments(all map[string]any) []string {
	out := []string{"default"}
	for _, t := range tablesOf(all) {
		if t != "default" && t != "resilience" {
			out = append(out, t)
		}
	}
	return out
}

// parseError names the document and, where the decoder gives it, the line
// and column of a syntax error: settings.toml:3:7: toml: expected character ].
func parseError(source, format string, data []byte, err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("%s:%d:%d: %w", source, row, col, err)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		row, col := position(data, se.Offset)
		return fmt.Errorf("%s:%d:%d: json: %w", source, row, col, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		row, col := position(data, te.Offset)
		return fmt.Errorf("%s:%d:%d: json: %w", source, row, col, err)
	}
	// yaml.v3 puts "line N" in its own messages.
	return fmt.Errorf("%s: cannot parse %s: %w", source, format, err)
}

// position returns the 1-based line and column of the byte at offset.
func position(data []byte, offset int64) (row, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	row = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return row, col
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

// applyEnv sets every RTX_A__B__C variable that names a settings key and
// returns their names, sorted. Variables that name no key are ignored:
// other tools share the prefix.
func applyEnv(doc map[string]any, env []string) (applied []string) {
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
		applied = append(applied, k)
	}
	slices.Sort(applied)
	return applied
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
