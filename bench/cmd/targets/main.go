// Command targets reads `go test -bench` output of the bench package (several
// runs, any order), takes the median of every measure, and checks rtx's
// targets against the same run's bare transport and peers:
//
//   - GET (and parallel GET): rtx's time over bare at most half of the faster
//     peer's time over bare;
//   - GET answered on the first attempt: no allocation over bare;
//   - streamed 64 KiB POST: bytes allocated over bare under 10% of the body;
//   - first-try GET under rtx's default settings (BenchmarkFirstTry,
//     BenchmarkFirstTryTimeout), circuits off ("rtx") and on
//     ("rtx-circuits"): time over bare flat across 1, 1,000 and 100,000
//     upstreams (at most 1.5 times the one-upstream figure, or 150 ns
//     more when that is larger), at most half
//     of go-retryablehttp's at every upstream count, no allocation over bare
//     without a per-attempt timeout and at most two with one.
//
// Each group of checks runs when its benchmarks are in the input.
// It prints one line per check and exits 1 if any fails. With -markdown it
// first prints the medians as a Markdown table.
//
//	go run ./cmd/targets [-markdown] bench.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

const postSize = 64 << 10

// line matches "BenchmarkGET/lib=rtx-2   20000   1234 ns/op ..." and
// "BenchmarkFirstTry/hosts=1000/lib=rtx-circuits-2   ...": the benchmark is
// everything before "/lib=" ("FirstTry/hosts=1000").
var line = regexp.MustCompile(`^Benchmark(\S+?)/lib=(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

type key struct{ bench, lib, unit string }

func main() {
	md := flag.Bool("markdown", false, "print the medians as a Markdown table first")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: targets [-markdown] BENCH_OUTPUT")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	med, err := medians(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	classic := has(med, "GET")
	first := has(med, firstTryName(firstTry[0], firstTryHosts[0]))
	if !classic && !first {
		fmt.Fprintln(os.Stderr, "no benchmark of the bench package in", flag.Arg(0))
		os.Exit(2)
	}
	if *md && classic {
		table(os.Stdout, med)
	}
	if *md && first {
		firstTryTable(os.Stdout, med)
	}
	ok := true
	check := func(pass bool, format string, args ...any) {
		verdict := "MEETS"
		if !pass {
			verdict, ok = "MISSES", false
		}
		fmt.Printf("%-6s  "+format+"\n", append([]any{verdict}, args...)...)
	}
	get := func(bench, lib, unit string) float64 {
		v, found := med[key{bench, lib, unit}]
		if !found {
			fmt.Fprintf(os.Stderr, "no %s for %s/lib=%s\n", unit, bench, lib)
			os.Exit(2)
		}
		return v
	}
	if first {
		checkFirstTry(check, get)
	}
	if !classic {
		if !ok {
			os.Exit(1)
		}
		return
	}
	for _, bench := range []string{"GET", "GETNoTimeout", "GETParallel"} {
		bare := get(bench, "bare", "ns/op")
		over := get(bench, "rtx", "ns/op") - bare
		peer := min(get(bench, "retryablehttp", "ns/op"), get(bench, "failsafe-go", "ns/op")) - bare
		check(over <= peer/2, "%-13s time over bare: rtx %.0f ns, faster peer %.0f ns (ratio %.2f, target <= 0.50)", bench, over, peer, over/peer)
	}
	// GET and GETParallel run under a 100 ms per-attempt timeout, which the
	// design allows two allocations; GETNoTimeout none.
	for _, bench := range []string{"GET", "GETNoTimeout", "GETParallel"} {
		limit := 2.0
		if bench == "GETNoTimeout" {
			limit = 0
		}
		da := get(bench, "rtx", "allocs/op") - get(bench, "bare", "allocs/op")
		db := get(bench, "rtx", "B/op") - get(bench, "bare", "B/op")
		check(da <= limit, "%-13s allocations over bare: rtx %+.0f allocs/op, %+.0f B/op (target <= %+.0f)", bench, da, db, limit)
	}
	db := get("POSTStream", "rtx", "B/op") - get("POSTStream", "bare", "B/op")
	check(db < postSize/10, "%-13s bytes over bare: rtx %+.0f B/op = %.1f%% of the 64 KiB body (target < 10%%)", "POSTStream", db, 100*db/postSize)
	if !ok {
		os.Exit(1)
	}
}

// medians returns the median of every (benchmark, library, unit).
func medians(r io.Reader) (map[key]float64, error) {
	vals := make(map[key][]float64)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", sc.Text(), err)
			}
			k := key{m[1], m[2], fields[i+1]}
			vals[k] = append(vals[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make(map[key]float64, len(vals))
	for k, vs := range vals {
		slices.Sort(vs)
		n := len(vs)
		if n%2 == 1 {
			out[k] = vs[n/2]
		} else {
			out[k] = (vs[n/2-1] + vs[n/2]) / 2
		}
	}
	return out, nil
}

var (
	benches = []string{"GET", "GETNoTimeout", "GETParallel", "POSTStream", "POSTGetBody"}
	libs    = []string{"bare", "rtx", "retryablehttp", "failsafe-go"}
)

// table writes the medians: one row per benchmark, one column per library,
// each cell "ns/op · B/op · allocs/op".
func table(w io.Writer, med map[key]float64) {
	fmt.Fprintf(w, "| benchmark (median ns/op · B/op · allocs/op) | %s |\n", strings.Join(libs, " | "))
	fmt.Fprintf(w, "| --- |%s\n", strings.Repeat(" ---: |", len(libs)))
	for _, b := range benches {
		fmt.Fprintf(w, "| %s |", b)
		for _, l := range libs {
			cell(w, med, b, l)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// cell writes one table cell, "ns/op · B/op · allocs/op" of library l in
// benchmark b, or "–" when the run has none.
func cell(w io.Writer, med map[key]float64, b, l string) {
	ns, ok := med[key{b, l, "ns/op"}]
	if !ok {
		fmt.Fprint(w, " – |")
		return
	}
	fmt.Fprintf(w, " %s · %.0f B · %.0f |", human(ns), med[key{b, l, "B/op"}], med[key{b, l, "allocs/op"}])
}

// human prints nanoseconds as ns or µs with three significant digits.
func human(ns float64) string {
	if ns >= 10000 {
		return fmt.Sprintf("%.1f µs", ns/1000)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// has reports whether the run holds bench for the bare transport.
func has(med map[key]float64, bench string) bool {
	_, ok := med[key{bench, "bare", "ns/op"}]
	return ok
}

var (
	firstTry      = []string{"FirstTry", "FirstTryTimeout"}
	firstTryHosts = []int{1, 1000, 100000}
	firstTryLibs  = []string{"bare", "rtx", "rtx-circuits", "retryablehttp"}
	firstTryRTX   = []string{"rtx", "rtx-circuits"}
)

// A first-try cost counts as flat when its time over bare at 1,000 and
// 100,000 upstreams exceeds the one-upstream figure by at most flatFactor
// times, or by at most flatSlack when that is more: the spread between
// passes on a shared machine is about ±30%, and a ratio of two small
// differences swings further.
const (
	flatFactor = 1.5
	flatSlack  = 150 // ns
)

func firstTryName(bench string, hosts int) string { return fmt.Sprintf("%s/hosts=%d", bench, hosts) }

func hostsLabel(n int) string {
	switch {
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return fmt.Sprint(n)
	}
}

// checkFirstTry runs the first-try checks: one line per (benchmark, rtx
// variant, target), each listing the figures at every upstream count.
func checkFirstTry(check func(bool, string, ...any), get func(bench, lib, unit string) float64) {
	var labels []string
	for _, n := range firstTryHosts {
		labels = append(labels, hostsLabel(n))
	}
	hosts := strings.Join(labels, " / ")
	for _, bench := range firstTry {
		for _, lib := range firstTryRTX {
			name := fmt.Sprintf("%-15s %-12s", bench, lib)
			var over, ratio, allocs []float64
			for _, n := range firstTryHosts {
				b := firstTryName(bench, n)
				bare := get(b, "bare", "ns/op")
				o := get(b, lib, "ns/op") - bare
				over = append(over, o)
				ratio = append(ratio, o/(get(b, "retryablehttp", "ns/op")-bare))
				allocs = append(allocs, get(b, lib, "allocs/op")-get(b, "bare", "allocs/op"))
			}
			flat := true
			for _, o := range over[1:] {
				flat = flat && o <= max(flatFactor*over[0], over[0]+flatSlack)
			}
			check(flat, "%s flat: time over bare %s ns at %s upstreams (target: at most %.1fx or +%d ns the 1-upstream figure)",
				name, join("%.0f", over), hosts, flatFactor, flatSlack)
			check(slices.Max(ratio) <= 0.5, "%s time over bare / go-retryablehttp's: %s at %s upstreams (target <= 0.50)",
				name, join("%.2f", ratio), hosts)
			limit := 0.0
			if bench == "FirstTryTimeout" {
				limit = 2
			}
			check(slices.Max(allocs) <= limit, "%s allocations over bare: %s allocs/op at %s upstreams (target <= %+.0f)",
				name, join("%+.0f", allocs), hosts, limit)
		}
	}
}

func join(format string, vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf(format, v)
	}
	return strings.Join(parts, " / ")
}

// firstTryTable writes the first-try medians: one row per (benchmark,
// upstream count), one column per transport, each cell "ns/op · B/op ·
// allocs/op".
func firstTryTable(w io.Writer, med map[key]float64) {
	fmt.Fprintf(w, "| first try (median ns/op · B/op · allocs/op) | upstreams | %s |\n", strings.Join(firstTryLibs, " | "))
	fmt.Fprintf(w, "| --- | ---: |%s\n", strings.Repeat(" ---: |", len(firstTryLibs)))
	for _, bench := range firstTry {
		for _, n := range firstTryHosts {
			b := firstTryName(bench, n)
			fmt.Fprintf(w, "| %s | %s |", bench, hostsLabel(n))
			for _, l := range firstTryLibs {
				cell(w, med, b, l)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
}
