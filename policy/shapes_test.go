package policy

import (
	"fmt"
	"strings"
)

// A shape is a kind of settings document: head, then unit(0), unit(1)
// and so on, then tail, to show what the decoders make of large documents.
type shape struct {
	name, format string
	head         string
	unit         func(i int) string // nil: the document is head alone
	tail         string
}

// build returns the shape's document with n units.
func (sh shape) build(n int) string {
	var b strings.Builder
	b.WriteString(sh.head)
	for i := 0; i < n && sh.unit != nil; i++ {
		b.WriteString(sh.unit(i))
	}
	b.WriteString(sh.tail)
	return b.String()
}

var shapes = []shape{
	{name: "many tables", format: "toml", head: "", unit: func(i int) string { return fmt.Sprintf("[t%d]\n", i) }, tail: ""},
	{name: "many policies", format: "toml", head: "", unit: func(i int) string {
		return fmt.Sprintf("[default.resilience.retry.policies.p%d]\nattempts = 2\n", i)
	}, tail: ""},
	{name: "many keys", format: "toml", head: "[a]\n", unit: func(i int) string { return fmt.Sprintf("k%d = 1\n", i) }, tail: ""},
	{name: "many dotted keys", format: "toml", head: "", unit: func(i int) string { return fmt.Sprintf("a.b%d.c = 1\n", i) }, tail: ""},
	{name: "dotted keys sharing a table", format: "toml", head: "", unit: func(i int) string { return fmt.Sprintf("a.b.c.k%d = 1\n", i) }, tail: ""},
	{name: "many circuits", format: "toml", head: "", unit: func(i int) string {
		return fmt.Sprintf("[default.resilience.circuit_breaker.circuits.\"h%d.example.com\"]\nfail_max = 2\n", i)
	}, tail: ""},
	{name: "many invalid policies", format: "toml", head: "", unit: func(i int) string {
		return fmt.Sprintf("[default.resilience.retry.policies.p%d]\nattempts = 0\n", i)
	}, tail: ""},
	{name: "long array", format: "toml", head: "x = [", unit: func(int) string { return "1," }, tail: "]\n"},
	{name: "long array of strings", format: "toml", head: "x = [", unit: func(int) string { return `"a",` }, tail: "]\n"},
	{name: "many inline tables", format: "toml", head: "", unit: func(i int) string { return fmt.Sprintf("k%d = {a = 1}\n", i) }, tail: ""},
	{name: "array of inline tables", format: "toml", head: "x = [", unit: func(int) string { return "{a=1}," }, tail: "]\n"},
	{name: "wide inline table", format: "toml", head: "x = {", unit: func(i int) string { return fmt.Sprintf("k%d=1,", i) }, tail: "z=1}\n"},
	{name: "array of tables", format: "toml", head: "", unit: func(int) string { return "[[a]]\n" }, tail: ""},
	{name: "deep inline tables at the limit", format: "toml", head: "x = " + strings.Repeat("{a=", MaxDepth-1) + "1" + strings.Repeat("}", MaxDepth-1) + "\n"},
	{name: "nested arrays at the limit, repeated", format: "toml", head: "x = [", unit: func(int) string { return strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + "," }, tail: "]\n"},
	{name: "deep headers at the limit, repeated", format: "toml", head: "", unit: func(i int) string {
		return fmt.Sprintf("[%sk%d]\n", strings.Repeat("a.", MaxDepth-2), i)
	}, tail: ""},
	{name: "long string", format: "toml", head: "x = \"" + strings.Repeat("[", MaxDocumentSize-10) + "\"\n"},
	{name: "yaml many keys", format: "yaml", head: "a:\n", unit: func(i int) string { return fmt.Sprintf("  k%d: 1\n", i) }, tail: ""},
	{name: "yaml long block list", format: "yaml", head: "x:\n", unit: func(int) string { return "- 1\n" }, tail: ""},
	{name: "yaml long flow list", format: "yaml", head: "x: [", unit: func(int) string { return "1," }, tail: "1]\n"},
	{name: "yaml nested flow at the limit, repeated", format: "yaml", head: "x: [", unit: func(int) string { return strings.Repeat("[", MaxDepth-2) + strings.Repeat("]", MaxDepth-2) + "," }, tail: "1]\n"},
	{name: "json many keys", format: "json", head: `{"a":{`, unit: func(i int) string { return fmt.Sprintf(`"k%d":1,`, i) }, tail: `"z":1}}`},
	{name: "json nested at the limit, repeated", format: "json", head: `{"x":[`, unit: func(int) string { return strings.Repeat("[", MaxDepth-2) + strings.Repeat("]", MaxDepth-2) + "," }, tail: "1]}"},
}
