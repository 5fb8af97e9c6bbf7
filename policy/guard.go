package policy

import (
	"errors"
	"fmt"
)

// Limits on a settings document, checked before any parser sees it (see
// [Factory.Parse]). They keep a hostile document, which may arrive through
// a live source, from crashing the process or stalling it: go-toml recurses
// once per level of nesting and its decoding grows faster than linearly
// with depth.
const (
	// MaxDocumentSize is the largest settings document accepted, in bytes (1 MiB).
	MaxDocumentSize = 1 << 20
	// MaxDepth is how deeply a settings document may nest, counting every
	// table (a [a.b.c] header is three levels), every part of a dotted key
	// but the last, every array and every inline table. The seed's deepest
	// key, [default.resilience.circuit_breaker.circuits."host"] fail_max,
	// is five levels deep.
	MaxDepth = 32
	// MaxKeys is how many keys and table headers a settings document may
	// hold. The decoders check each table for duplicate keys in time that
	// grows with the square of its size (go-toml's tracker, yaml.v3's
	// mapping check): a 1 MiB TOML document of 100,000 keys takes about 30
	// seconds to decode, one of 10,000 keys 0.2 s. This bound keeps every
	// document within the limits decoding in well under a second, and is
	// far above what a settings file needs (the seed's holds about 40).
	MaxKeys = 5_000
	// MaxValues is how many array elements, arrays, inline tables and YAML
	// lines a settings document may hold.
	MaxValues = 100_000
)

// Errors wrapped by the error for a document over a limit. The error itself
// names the document and, for depth, the line where the limit was passed.
var (
	// ErrTooLarge: the document is over MaxDocumentSize bytes.
	ErrTooLarge = errors.New("settings document too large")
	// ErrTooDeep: the document nests more than MaxDepth levels.
	ErrTooDeep = errors.New("settings document nested too deeply")
	// ErrTooManyKeys: the document holds more than MaxKeys keys and tables.
	ErrTooManyKeys = errors.New("settings document has too many keys")
	// ErrTooManyValues: the document holds more than MaxValues values.
	ErrTooManyValues = errors.New("settings document has too many values")
)

// guard rejects a document over MaxDocumentSize, nested deeper than
// MaxDepth or holding more than MaxKeys keys or MaxValues values. It reads data once, in
// linear time, and never panics. format is "toml", "yaml" or "json"; any
// other format is scanned as TOML.
//
// The scanners know enough of each syntax (strings, comments, YAML block
// scalars) not to count a bracket inside a string. Where a document is
// malformed they may count more than a parser would, never less.
func guard(data []byte, format, source string) error {
	if len(data) > MaxDocumentSize {
		return fmt.Errorf("%s: %w: %d bytes, the limit is %d (1 MiB)", source, ErrTooLarge, len(data), MaxDocumentSize)
	}
	var sc scan
	switch format {
	case "yaml":
		sc.yaml(data)
	case "json":
		sc.json(data)
	default:
		sc.toml(data)
	}
	switch {
	case sc.deepLine > 0:
		return fmt.Errorf("%s:%d: %w: more than %d levels", source, sc.deepLine, ErrTooDeep, MaxDepth)
	case sc.keys > MaxKeys:
		return fmt.Errorf("%s: %w: %d keys and table headers, the limit is %d", source, ErrTooManyKeys, sc.keys, MaxKeys)
	case sc.values > MaxValues:
		return fmt.Errorf("%s: %w: %d values (array elements, arrays, tables, lines), the limit is %d", source, ErrTooManyValues, sc.values, MaxValues)
	}
	return nil
}

// scan holds a scanner's findings.
type scan struct {
	line     int // current line, from 1
	deepLine int // line where depth first passed MaxDepth; 0: never
	keys     int // keys and table headers seen
	values   int // array elements, arrays, inline tables, lines seen
}

// at records that something sits at depth d. It reports false once the
// document is known to be too deep, so that the scanner can stop.
func (s *scan) at(d int) bool {
	if d > MaxDepth && s.deepLine == 0 {
		s.deepLine = s.line
	}
	return s.deepLine == 0
}

// frame is an open array or inline table.
type frame struct {
	kind  byte // '[' or '{'
	outer int  // depth to return to when it closes
}

// toml scans a TOML document. Depth is the table's depth (parts of the
// last header), plus the parts of a dotted key but the last, plus one per
// open array or inline table.
func (s *scan) toml(b []byte) {
	s.line = 1
	var (
		stack   []frame
		table   int  // depth of the current [table]
		cur     int  // depth where values are placed now
		dots    int  // dots in the key being read
		inKey   bool // reading a key (before '=')
		lineBeg = true
	)
	valueDepth := func() int {
		if len(stack) == 0 {
			return table + dots
		}
		return cur + dots
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if lineBeg && len(stack) == 0 {
			switch c {
			case ' ', '\t', '\r':
				continue
			case '\n':
				s.line++
				continue
			case '#':
				i = skipLine(b, i)
				continue
			case '[':
				lineBeg = false
				i = s.tomlHeader(b, i, &table)
				if s.deepLine != 0 {
					return
				}
				continue
			}
			lineBeg, inKey, dots = false, true, 0
		}
		switch c {
		case '\n':
			s.line++
			if len(stack) == 0 {
				lineBeg, inKey = true, false
			}
		case '#':
			i = skipLine(b, i)
		case '"', '\'':
			i = s.tomlString(b, i)
		case '.':
			if inKey {
				dots++
			}
		case '=':
			if inKey {
				inKey = false
				s.keys++
				if !s.at(valueDepth()) {
					return
				}
			}
		case '[', '{':
			d := valueDepth() + 1
			stack = append(stack, frame{kind: c, outer: cur})
			cur, dots = d, 0
			inKey = c == '{'
			s.values++
			if !s.at(cur) {
				return
			}
		case ']', '}':
			if n := len(stack); n > 0 {
				cur = stack[n-1].outer
				stack = stack[:n-1]
			}
			inKey, dots = false, 0
		case ',':
			if n := len(stack); n > 0 {
				inKey, dots = stack[n-1].kind == '{', 0
				s.values++
			}
		}
	}
}

// tomlHeader reads a [table] or [[array.table]] header starting at b[i]
// and sets *table to its depth; it returns the index of its last byte.
func (s *scan) tomlHeader(b []byte, i int, table *int) int {
	d := 1
	if i+1 < len(b) && b[i+1] == '[' {
		d++ // the array of tables and its element
		i++
	}
	s.keys++
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\n':
			i-- // let the caller count the line
			*table = d
			s.at(d)
			return i
		case '.':
			d++
		case '"', '\'':
			i = s.tomlString(b, i)
		case ']':
			*table = d
			s.at(d)
			return skipLine(b, i)
		}
	}
	*table = d
	s.at(d)
	return i
}

// tomlString skips the string whose opening quote is b[i] and returns the
// index of its closing quote. A single-line string ends at the end of the
// line even without its closing quote (a parser rejects it there).
func (s *scan) tomlString(b []byte, i int) int {
	q := b[i]
	basic := q == '"'
	if i+2 < len(b) && b[i+1] == q && b[i+2] == q { // multi-line
		for i += 3; i < len(b); i++ {
			switch c := b[i]; {
			case c == '\n':
				s.line++
			case c == '\\' && basic:
				if i+1 < len(b) && b[i+1] == '\n' {
					s.line++
				}
				i++
			case c == q && i+2 < len(b) && b[i+1] == q && b[i+2] == q:
				i += 2
				// Up to two more quotes belong to the content.
				for k := 0; k < 2 && i+1 < len(b) && b[i+1] == q; k++ {
					i++
				}
				return i
			}
		}
		return i
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\n':
			return i - 1
		case c == '\\' && basic:
			if i+1 < len(b) && b[i+1] == '\n' {
				return i
			}
			i++
		case c == q:
			return i
		}
	}
	return i
}

// skipLine returns the index of the last byte before the end of the line
// that b[i] is on.
func skipLine(b []byte, i int) int {
	for i < len(b) && b[i] != '\n' {
		i++
	}
	return i - 1
}

// json scans a JSON document: depth is the number of open arrays and
// objects.
func (s *scan) json(b []byte) {
	s.line = 1
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\n':
			s.line++
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				switch b[i] {
				case '\\':
					i++
				case '\n':
					s.line++
				}
			}
		case '[', '{':
			depth++
			s.values++
			if !s.at(depth) {
				return
			}
		case ']', '}':
			depth = max(depth-1, 0)
		case ',':
			s.values++
		case ':':
			s.keys++
		}
	}
}

// yaml scans a YAML document. Depth is the number of block indentation
// levels open (a "- " entry opens one at its content's column, so that
// "- - - x" is three), plus one per open flow collection. Quoted scalars
// and block scalars (| and >) are skipped; flow indicators count only
// where a value can start, so that "a: b[c" is a plain scalar. Indentation
// is counted inside flow collections too, which over-counts only documents
// written in flow style across many indented lines.
func (s *scan) yaml(b []byte) {
	s.line = 1
	var (
		indents []int // columns of the open block levels
		flow    int   // open flow collections
		i       int
	)
	push := func(col int) bool {
		for len(indents) > 0 && indents[len(indents)-1] > col {
			indents = indents[:len(indents)-1]
		}
		if len(indents) == 0 || indents[len(indents)-1] < col {
			indents = append(indents, col)
		}
		return s.at(len(indents) + flow)
	}
	for i < len(b) {
		// Start of a line: measure the indentation.
		lineStart := i
		for i < len(b) && b[i] == ' ' {
			i++
		}
		if i >= len(b) {
			return
		}
		switch b[i] {
		case '\n':
			s.line++
			i++
			continue
		case '\r', '\t':
			if j := skipSpace(b, i); j >= len(b) || b[j] == '\n' || b[j] == '#' {
				i = skipLine(b, i) + 1
				continue
			}
		case '#':
			i = skipLine(b, i) + 1
			continue
		}
		if !push(i - lineStart) {
			return
		}
		s.values++
		// Block indicators "- ", "? ", ": " at the start of the content
		// open a level each at the column of what follows.
		for flow == 0 && i < len(b) && (b[i] == '-' || b[i] == '?' || b[i] == ':') &&
			(i+1 == len(b) || b[i+1] == ' ' || b[i+1] == '\n' || b[i+1] == '\r') {
			i = skipSpace(b, i+1)
			if !push(i - lineStart) {
				return
			}
		}
		// The rest of the line: a key, a value, flow collections.
		valueStart := true
		block := -1 // >= 0: a block scalar starts; its parent's indent
		for i < len(b) && b[i] != '\n' {
			c := b[i]
			switch {
			case c == '#' && (i == lineStart || b[i-1] == ' ' || b[i-1] == '\t'):
				i = skipLine(b, i) + 1
				continue
			case valueStart && (c == '"' || c == '\''):
				i = s.yamlQuoted(b, i)
				valueStart = false
			case valueStart && flow == 0 && (c == '|' || c == '>'):
				// The scalar's parent is the innermost block level, or the
				// sequence around it when the scalar is the entry itself
				// ("- |").
				block = indents[len(indents)-1]
				if n := len(indents); n > 1 && i-lineStart == indents[n-1] {
					block = indents[n-2]
				}
				valueStart = false
			case (valueStart || flow > 0) && (c == '[' || c == '{'):
				flow++
				s.values++
				if !s.at(len(indents) + flow) {
					return
				}
				valueStart = true
			case flow > 0 && (c == ']' || c == '}'):
				flow--
				valueStart = false
			case flow > 0 && c == ',':
				s.values++
				valueStart = true
			case c == ':' && (flow > 0 || i+1 == len(b) || b[i+1] == ' ' || b[i+1] == '\t' || b[i+1] == '\n' || b[i+1] == '\r'):
				// In a flow collection a value may follow a key's colon
				// directly ({"a":"b"}).
				valueStart = true
				s.keys++
			case c == ' ' || c == '\t' || c == '\r':
				// Spaces keep valueStart as it is.
			case valueStart && (c == '&' || c == '!'):
				// An anchor or a tag before the value: skip its name.
				for i+1 < len(b) && b[i+1] != ' ' && b[i+1] != '\n' {
					i++
				}
			default:
				valueStart = false
			}
			i++
		}
		if i < len(b) {
			s.line++
			i++
		}
		if block >= 0 {
			i = s.yamlBlockScalar(b, i, block)
		}
	}
}

// yamlQuoted skips the quoted scalar whose opening quote is b[i], across
// lines, and returns the index of its closing quote.
func (s *scan) yamlQuoted(b []byte, i int) int {
	q := b[i]
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\n':
			s.line++
		case '\\':
			if q == '"' {
				if i+1 < len(b) && b[i+1] == '\n' {
					s.line++
				}
				i++
			}
		case q:
			if q == '\'' && i+1 < len(b) && b[i+1] == '\'' { // '' is a quote
				i++
				continue
			}
			return i
		}
	}
	return i
}

// yamlBlockScalar skips the content of a block scalar whose parent block
// is indented parent columns, from the line starting at b[i]: blank lines
// and lines indented as deeply as its first non-blank line, if that one is
// indented more than parent. It returns the index of the first line after.
func (s *scan) yamlBlockScalar(b []byte, i, parent int) int {
	content := -1
	for i < len(b) {
		j := i
		for j < len(b) && b[j] == ' ' {
			j++
		}
		if j >= len(b) {
			return j
		}
		if b[j] == '\n' || b[j] == '\r' && j+1 < len(b) && b[j+1] == '\n' {
			i = skipLine(b, j) + 2
			s.line++
			continue
		}
		col := j - i
		if content < 0 {
			if col <= parent {
				return i
			}
			content = col
		}
		if col < content {
			return i
		}
		i = skipLine(b, j) + 2
		s.line++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}
