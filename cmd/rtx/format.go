package main

import (
	"strconv"
	"strings"
	"time"
)

// fmtDur formats a duration compactly for tables and charts: "100ms",
// "1.5s", "5m", "20m15s", "1h2m". It rounds to the microsecond, which hides
// the nanosecond noise of float arithmetic without hiding any value a
// settings file can express in a readable way.
func fmtDur(d time.Duration) string {
	d = d.Round(time.Microsecond)
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return trimFloat(float64(d)/float64(time.Microsecond), 0) + "µs"
	case d < time.Second:
		return trimFloat(float64(d)/float64(time.Millisecond), 3) + "ms"
	case d < time.Minute:
		return trimFloat(d.Seconds(), 6) + "s"
	}
	var b strings.Builder
	if h := d / time.Hour; h > 0 {
		b.WriteString(strconv.FormatInt(int64(h), 10) + "h")
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		b.WriteString(strconv.FormatInt(int64(m), 10) + "m")
		d -= m * time.Minute
	}
	if d > 0 {
		b.WriteString(trimFloat(d.Seconds(), 6) + "s")
	}
	return b.String()
}

// trimFloat formats f with at most prec decimals and no trailing zeros.
func trimFloat(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// fmtNum formats a settings number (backoff, jitter) without noise.
func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// plural returns "1 attempt" or "3 attempts".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(word, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// wrap breaks text into lines of at most width columns (counting runes),
// the first prefixed by first and the rest by rest. Words longer than a line
// stay whole.
func wrap(text, first, rest string, width int) string {
	var b strings.Builder
	line, prefix := 0, first
	b.WriteString(prefix)
	line = len([]rune(prefix))
	start := true
	for _, w := range strings.Fields(text) {
		n := len([]rune(w))
		if !start && line+1+n > width {
			b.WriteString("\n")
			b.WriteString(rest)
			line = len([]rune(rest))
			start = true
		}
		if !start {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += n
		start = false
	}
	b.WriteString("\n")
	return b.String()
}
