// Command scenarios sends the same logical requests through rtx,
// go-retryablehttp and failsafe-go under each fault scenario, against a
// loopback server, and prints one table, library by library.
//
//	go run ./cmd/scenarios -n 1000 -workers 16
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/athomic-go/rtx/bench"
	"github.com/athomic-go/rtx/bench/scenario"
)

func main() {
	n := flag.Int("n", 400, "logical requests per library and scenario")
	workers := flag.Int("workers", 8, "concurrent callers")
	seed := flag.Uint64("seed", 1, "fault pattern seed")
	md := flag.Bool("markdown", false, "print a Markdown table")
	only := flag.String("only", "", "run only scenarios whose name contains this")
	budget := flag.Bool("budget", true, "add a row for rtx with its default retry budget to the outage scenario")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := scenario.Config{Requests: *n, Workers: *workers, Policy: bench.DefaultPolicy, Seed: *seed}
	var results []scenario.Result
	for _, sc := range scenario.Scenarios {
		if !strings.Contains(sc.Name, *only) {
			continue
		}
		libs := bench.Retrying()
		if *budget && sc.Name == scenario.Scenarios[0].Name {
			libs = append(libs, bench.RTXBudget)
		}
		for _, lib := range libs {
			r, err := scenario.Run(ctx, lib, sc, cfg)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s / %s: %v\n", sc.Name, lib.Name, err)
				os.Exit(1)
			}
			results = append(results, r)
		}
	}
	fmt.Printf("policy: %d attempts, waits %v..%v (x2, no jitter), per-attempt timeout %v; %d requests x %d workers per row\n\n",
		cfg.Policy.Attempts, cfg.Policy.WaitMin, cfg.Policy.WaitMax, cfg.Policy.Timeout, cfg.Requests, cfg.Workers)
	write := scenario.Table
	if *md {
		write = scenario.Markdown
	}
	if err := write(os.Stdout, results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
