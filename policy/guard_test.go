package policy

import (
	"errors"
	"strings"
	"testing"
)

// guardCases are documents the guard must reject, with the sentinel and
// the text the error must carry, or accept (err nil).
var guardCases = []struct {
	name, format, doc string
	err               error
	want              string
}{
	{"too large", "toml", "x = 1\n" + strings.Repeat("#", MaxDocumentSize), ErrTooLarge, "s.toml: settings document too large: 1048582 bytes, the limit is 1048576"},
	{"exactly 1 MiB", "toml", "x = 1\n" + strings.Repeat("#", MaxDocumentSize-6), nil, ""},
	{"a million brackets", "toml", "x = " + strings.Repeat("[", 1_000_000) + strings.Repeat("]", 40_000), ErrTooDeep, "s.toml:1: settings document nested too deeply: more than 32 levels"},
	{"deep inline tables", "toml", "a = 1\nx = " + strings.Repeat("{a=", 40) + "1" + strings.Repeat("}", 40), ErrTooDeep, "s.toml:2:"},
	{"deep arrays across lines", "toml", "x = [\n" + strings.Repeat("[\n", 40) + strings.Repeat("]\n", 40) + "]", ErrTooDeep, "s.toml:33:"},
	{"deep header", "toml", "[" + strings.Repeat("a.", 32) + "b]\nx = 1", ErrTooDeep, "s.toml:1:"},
	{"header at the limit", "toml", "[" + strings.Repeat("a.", 31) + "b]\nx = 1", nil, ""},
	{"deep array of tables", "toml", "[[" + strings.Repeat("a.", 31) + "b]]\nx = 1", ErrTooDeep, "s.toml:1:"},
	{"header plus dotted key", "toml", "[" + strings.Repeat("a.", 20) + "b]\n" + strings.Repeat("c.", 12) + "d = 1", ErrTooDeep, "s.toml:2:"},
	{"deep dotted key", "toml", strings.Repeat("k.", 33) + "z = 1", ErrTooDeep, ""},
	{"dotted keys in inline tables", "toml", "x = " + strings.Repeat("{a.b.c=", 12) + "1" + strings.Repeat("}", 12), ErrTooDeep, ""},
	{"brackets in strings", "toml", "x = \"" + strings.Repeat("[", 100) + "\"\ny = '" + strings.Repeat("{", 100) + "'\n" +
		"z = \"\"\"\n" + strings.Repeat("[", 100) + "\\\"\"\"\"\nw = '''" + strings.Repeat("[", 100) + "'''\n", nil, ""},
	{"brackets in comments", "toml", "# " + strings.Repeat("[", 100) + "\nx = [1, # " + strings.Repeat("[", 100) + "\n2]\n", nil, ""},
	{"dots in quoted keys", "toml", `[a."` + strings.Repeat(".", 100) + `"]` + "\n" + `"b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h" = 1`, nil, ""},
	{"escaped quote does not end a string", "toml", "x = \"\\\"" + strings.Repeat("[", 40) + "\"", nil, ""},
	{"unterminated string ends at the line", "toml", "x = \"abc\ny = " + strings.Repeat("[", 40), ErrTooDeep, "s.toml:2:"},
	{"many keys", "toml", strings.Repeat("k = 1\n", MaxKeys+1), ErrTooManyKeys, "s.toml: settings document has too many keys: 5001 keys"},
	{"many values", "toml", "x = [" + strings.Repeat("1,", MaxValues+1) + "]", ErrTooManyValues, "too many values"},
	{"json deep", "json", strings.Repeat("[", 33) + strings.Repeat("]", 33), ErrTooDeep, "s.toml:1:"},
	{"json at the limit", "json", strings.Repeat("[", 32) + strings.Repeat("]", 32), nil, ""},
	{"json brackets in strings", "json", `{"a": "` + strings.Repeat(`[\"`, 100) + `"}`, nil, ""},
	{"yaml deep flow", "yaml", "x: " + strings.Repeat("[", 40), ErrTooDeep, "s.toml:1:"},
	{"yaml deep blocks", "yaml", deepYAML(40), ErrTooDeep, "s.toml:33:"},
	{"yaml blocks at the limit", "yaml", deepYAML(32), nil, ""},
	{"yaml compact sequences", "yaml", strings.Repeat("- ", 40) + "x", ErrTooDeep, ""},
	{"yaml block scalar", "yaml", "a:\n  b: |\n    " + strings.Repeat("[", 100) + "\n     " + strings.Repeat("- ", 100) + "\n  c: >-\n    {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\n  d: 1\n", nil, ""},
	{"yaml quotes and plain brackets", "yaml", "a: \"" + strings.Repeat("[", 50) + "\"\nb: '" + strings.Repeat("{", 50) + "''x'\nc: x" + strings.Repeat("[", 50) + "\nd: it's [\ne: 1 # " + strings.Repeat("[", 50) + "\n", nil, ""},
	{"yaml after a block scalar", "yaml", "a: |\n  text\nb: " + strings.Repeat("[", 40), ErrTooDeep, "s.toml:3:"},
}

func deepYAML(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	return b.String()
}

func TestGuard(t *testing.T) {
	for _, tc := range guardCases {
		t.Run(tc.name, func(t *testing.T) {
			err := guard([]byte(tc.doc), tc.format, "s.toml")
			if tc.err == nil {
				if err != nil {
					t.Fatalf("rejected a sane document: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("guard = %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// Every load path runs the guard: a document that would crash go-toml is
// an error everywhere, and the factory keeps what it had.
func TestGuardOnEveryPath(t *testing.T) {
	hostile := "x = " + strings.Repeat("[", 1_000_000)
	if _, err := LoadFile(write(t, "settings.toml", hostile), WithEnviron(noEnv)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("LoadFile: %v", err)
	}
	big := strings.Repeat("#", MaxDocumentSize+1)
	if _, err := LoadFile(write(t, "settings.toml", big), WithEnviron(noEnv)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("LoadFile: %v", err)
	}
	f := load(t, "[default.resilience.retry.policies.a]\nattempts = 2\n")
	if _, err := f.Parse([]byte(hostile), "toml", "live"); !errors.Is(err, ErrTooDeep) || !strings.HasPrefix(err.Error(), "live:1:") {
		t.Errorf("Parse: %v", err)
	}
	if _, err := f.Update([]byte(hostile), "toml", "live"); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Update: %v", err)
	}
	if _, err := f.Update([]byte(big), "yaml", "live"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Update: %v", err)
	}
	if p, err := f.Policy("a"); err != nil || p.Attempts != 2 {
		t.Errorf("after rejected updates: %+v, %v", p, err)
	}
	if r := f.Status().Rejected; r == nil || r.Source != "live" || !strings.Contains(r.Err, "too large") {
		t.Errorf("Status().Rejected = %+v", r)
	}
}

// The largest documents of every shape that the guard lets through decode:
// the limits leave no shape that a parser chokes on. BenchmarkDecodeShapes
// shows how long each takes.
func TestDecodeWorstAcceptedShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes about 20 documents of up to 1 MiB")
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			doc := []byte(largestAccepted(sh))
			if len(doc) < 1000 && !strings.Contains(sh.name, "limit") {
				t.Fatalf("largest accepted document is only %d bytes", len(doc))
			}
			lc := &loadConfig{environ: noEnv}
			_, err := parse(doc, sh.format, "shape", lc)
			if strings.Contains(sh.name, "invalid") {
				if err == nil || len(err.Error()) > 4096 || !strings.Contains(err.Error(), "more problems") {
					t.Fatalf("want a short validation error, got %d bytes: %.200v", len(fmtErr(err)), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// largestAccepted returns the largest document of the shape, within
// MaxDocumentSize, that the guard accepts.
func largestAccepted(sh shape) string {
	if sh.unit == nil {
		return sh.head
	}
	// ends[k] is the length of head and k units.
	var units strings.Builder
	ends := []int{0}
	for i := 0; len(sh.head)+units.Len()+len(sh.tail) <= MaxDocumentSize; i++ {
		units.WriteString(sh.unit(i))
		ends = append(ends, units.Len())
	}
	all := units.String()
	doc := func(k int) string { return sh.head + all[:ends[k]] + sh.tail }
	lo, hi := 0, len(ends)-1 // doc(lo) is accepted, doc(hi) is not
	if hi--; guard([]byte(doc(hi)), sh.format, "m") == nil {
		return doc(hi)
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if guard([]byte(doc(mid)), sh.format, "m") == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	return doc(lo)
}

// BenchmarkDecodeShapes decodes the largest accepted document of each
// shape. Run with -bench DecodeShapes -benchtime 1x to see the worst case.
func BenchmarkDecodeShapes(b *testing.B) {
	for _, sh := range shapes {
		doc := []byte(largestAccepted(sh))
		b.Run(strings.ReplaceAll(sh.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			lc := &loadConfig{environ: noEnv}
			for b.Loop() {
				_, _ = parse(doc, sh.format, "shape", lc)
			}
		})
	}
}

// BenchmarkGuard scans a 1 MiB document.
func BenchmarkGuard(b *testing.B) {
	doc := []byte(fill(MaxDocumentSize, "", func(int) string { return "x = [\"a[b\", {c = 1}] # [\n" }, ""))
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_ = guard(doc, "toml", "bench")
	}
}

// fill repeats unit(i) after head until the document would pass n bytes.
func fill(n int, head string, unit func(i int) string, tail string) string {
	return largestWithin(n, shape{head: head, unit: unit, tail: tail})
}

func largestWithin(n int, sh shape) string {
	var b strings.Builder
	b.WriteString(sh.head)
	for i := 0; ; i++ {
		u := sh.unit(i)
		if b.Len()+len(u)+len(sh.tail) > n {
			break
		}
		b.WriteString(u)
	}
	b.WriteString(sh.tail)
	return b.String()
}
