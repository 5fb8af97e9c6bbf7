// Package scenario runs the same logical requests through each retrying
// library against a loopback [faultserver.Server] that injects one kind of
// fault, and measures what the client saw (success rate, latency) and what
// the server saw (attempts per logical request, TCP connections opened).
package scenario

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/athomic-go/rtx/bench"
	"github.com/athomic-go/rtx/bench/internal/faultserver"
)

// Scenario is one kind of fault.
type Scenario struct {
	Name string
	// Fault decides attempt n (from 1) of logical request id; r is a
	// deterministic number in [0,1) for that pair, so every library meets
	// the same faults.
	Fault func(id, n int, r float64) faultserver.Fault
}

// Scenarios are the standard ones, in table order.
var Scenarios = []Scenario{
	{"outage (all 503)", func(int, int, float64) faultserver.Fault { return faultserver.Status503 }},
	{"10% 503", share(0.10, faultserver.Status503)},
	{"30% 503", share(0.30, faultserver.Status503)},
	{"20% conn reset", share(0.20, faultserver.Reset)},
	{"20% slow (300ms)", share(0.20, faultserver.Slow)},
	{"25% 429 Retry-After:1", func(_, n int, r float64) faultserver.Fault {
		if n == 1 && r < 0.25 {
			return faultserver.Status429
		}
		return faultserver.None
	}},
}

func share(p float64, f faultserver.Fault) func(int, int, float64) faultserver.Fault {
	return func(_, _ int, r float64) faultserver.Fault {
		if r < p {
			return f
		}
		return faultserver.None
	}
}

// Config sizes a run.
type Config struct {
	Requests int          // logical requests per library and scenario
	Workers  int          // concurrent callers
	Policy   bench.Policy // given to every library
	Seed     uint64       // varies the faults' pattern, the same for every library
}

// Result is one library under one scenario.
type Result struct {
	Scenario, Library string
	Requests, OK      int
	Hits              int64 // attempts that reached the server
	Conns             int64 // TCP connections the server accepted
	P50, P99          time.Duration
}

// Amplification is server hits per logical request.
func (r Result) Amplification() float64 { return float64(r.Hits) / float64(r.Requests) }

// Run sends cfg.Requests GETs through lib's transport, over a fresh pooled
// base, to a fresh server injecting sc's faults. Each caller reads every
// final body to its end and closes it; what the library does with the
// responses it discards is its own business, and shows in Conns.
func Run(ctx context.Context, lib bench.Library, sc Scenario, cfg Config) (Result, error) {
	srv := faultserver.Start(faultserver.Config{
		Decide: func(id string, n int) faultserver.Fault {
			i, _ := strconv.Atoi(id)
			return sc.Fault(i, n, unit(cfg.Seed, uint64(i), uint64(n)))
		},
	})
	defer srv.Close()
	base := bench.NewBase()
	defer base.CloseIdleConnections()
	rt, err := lib.New(base, cfg.Policy)
	if err != nil {
		return Result{}, err
	}
	client := &http.Client{Transport: rt}

	lat := make([]time.Duration, cfg.Requests)
	okc := make([]bool, cfg.Requests)
	ids := make(chan int)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for id := range ids {
				start := time.Now()
				okc[id] = get(ctx, client, srv.URL, id) == nil
				lat[id] = time.Since(start)
			}
		})
	}
feed:
	for id := range cfg.Requests {
		select {
		case ids <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	res := Result{
		Scenario: sc.Name,
		Library:  lib.Name,
		Requests: cfg.Requests,
		Hits:     srv.Hits(),
		Conns:    srv.Conns(),
	}
	for _, ok := range okc {
		if ok {
			res.OK++
		}
	}
	slices.Sort(lat)
	res.P50 = quantile(lat, 0.50)
	res.P99 = quantile(lat, 0.99)
	return res, nil
}

// get is one logical request: nil when it ends in a 200 with the healthy body.
// Its context ends with it, as a caller's per-request timeout would: that
// frees the connections of responses a library discarded without closing.
func get(ctx context.Context, c *http.Client, url string, id int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set(faultserver.IDHeader, strconv.Itoa(id))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return faultserver.CheckBody(resp)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// unit maps (seed, id, n) to [0,1) with splitmix64.
func unit(seed, id, n uint64) float64 {
	x := seed ^ id*0x9e3779b97f4a7c15 ^ n*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// Table writes results as one aligned text table, in the order given.
func Table(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "scenario\tlibrary\tsuccess\tp50\tp99\thits/request\tTCP conns\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%s\t%s\t%.2f\t%d\t\n",
			r.Scenario, r.Library, 100*float64(r.OK)/float64(r.Requests),
			round(r.P50), round(r.P99), r.Amplification(), r.Conns)
	}
	return tw.Flush()
}

// Markdown writes results as a Markdown table.
func Markdown(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| scenario | library | success | p50 | p99 | hits/request | TCP conns |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %.1f%% | %s | %s | %.2f | %d |\n",
			r.Scenario, r.Library, 100*float64(r.OK)/float64(r.Requests),
			round(r.P50), round(r.P99), r.Amplification(), r.Conns)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
