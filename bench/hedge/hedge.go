// Package hedge runs the tail-latency scenario of hedged requests against a
// loopback server, client kind by client kind: no hedging, failsafe-go's
// hedge policy (fixed delay and p95 quantile) and rtx (hedge_delay_seconds
// and hedge_quantile = 0.95).
//
// Each attempt's latency is drawn from a lognormal around a median, plus a
// fixed extra for a share of stragglers, from (seed, logical request,
// attempt number), so every kind meets the same distribution, attempt for
// attempt. A run has two phases on the same client: steady, then the median
// multiplied (tripled by default) — an adaptive delay must follow it. A
// second check, the outage, makes every attempt slower than the per-attempt
// timeout and measures the amplification (attempts at the server per logical
// request).
package hedge

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
	"time"

	"github.com/athomic-go/rtx/bench"
)

// Config sizes a run. DefaultConfig gives the standard scenario.
type Config struct {
	Requests int // logical requests per phase (steady, shift)
	Workers  int // concurrent callers

	Median    time.Duration // median of an attempt's latency, steady phase
	Sigma     float64       // lognormal shape: log-latency's standard deviation
	SlowShare float64       // share of attempts that are stragglers
	SlowExtra time.Duration // what a straggler adds
	Shift     float64       // the median's factor in the shift phase

	OutageRequests int           // logical requests of the outage check
	OutageLatency  time.Duration // every attempt's latency in the outage
	OutageTimeout  time.Duration // the per-attempt timeout in the outage

	Seed uint64 // varies the draws, the same for every kind
}

// DefaultConfig is the scenario of the README: 16 callers, a 2 ms median
// (sigma 0.5), 5% of attempts 40 ms slower, the median tripled in the shift
// phase; the outage answers after 200 ms, over a 50 ms per-attempt timeout.
func DefaultConfig() Config {
	return Config{
		Requests:       12000,
		Workers:        16,
		Median:         2 * time.Millisecond,
		Sigma:          0.5,
		SlowShare:      0.05,
		SlowExtra:      40 * time.Millisecond,
		Shift:          3,
		OutageRequests: 800,
		OutageLatency:  200 * time.Millisecond,
		OutageTimeout:  50 * time.Millisecond,
		Seed:           1,
	}
}

// Latency is the latency of attempt n (from 1) of logical request id under
// median: median·exp(Sigma·Z), Z standard normal, plus SlowExtra for a
// SlowShare of attempts. It depends on nothing but its arguments and
// c.Seed.
func (c Config) Latency(median time.Duration, id, n int) time.Duration {
	u1 := unit(c.Seed, uint64(id), uint64(n), 1)
	u2 := unit(c.Seed, uint64(id), uint64(n), 2)
	u3 := unit(c.Seed, uint64(id), uint64(n), 3)
	z := math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2) // Box–Muller
	d := time.Duration(float64(median) * math.Exp(c.Sigma*z))
	if u3 < c.SlowShare {
		d += c.SlowExtra
	}
	return d
}

// Phase is what one phase measured of one kind.
type Phase struct {
	Requests  int   // logical requests
	Failed    int   // logical requests that did not end in 200 "ok"
	Attempts  int64 // attempts the server received for them
	Cancelled int64 // attempts the server saw cancelled during the phase
	P50, P99  time.Duration
	FirstErr  error // the first failure, if any

	lat []time.Duration // every logical request's, sorted
}

// join returns the phase made of p and q together.
func join(p, q Phase) Phase {
	j := Phase{Requests: p.Requests + q.Requests, Failed: p.Failed + q.Failed,
		Attempts: p.Attempts + q.Attempts, Cancelled: p.Cancelled + q.Cancelled, FirstErr: p.FirstErr}
	if j.FirstErr == nil {
		j.FirstErr = q.FirstErr
	}
	j.lat = slices.Concat(p.lat, q.lat)
	slices.Sort(j.lat)
	j.P50, j.P99 = quantileOf(j.lat, 0.50), quantileOf(j.lat, 0.99)
	return j
}

// Extra is the share of attempts beyond one per logical request.
func (p Phase) Extra() float64 { return float64(p.Attempts)/float64(p.Requests) - 1 }

// Amplification is attempts at the server per logical request.
func (p Phase) Amplification() float64 { return float64(p.Attempts) / float64(p.Requests) }

// Whole is the run of both phases together: the scenario with the median
// tripled halfway through. The hedging issue's figures "after shift" are
// of this (its no-hedging p99, 47 ms, and failsafe-go's fixed delay's
// 55% extra fit a run half at each median, not the second half alone).
func (r Result) Whole() Phase { return join(r.Steady, r.Shift) }

// Result is one kind's run.
type Result struct {
	Kind string
	// Err says why the kind could not run (the rtx kinds before rtx hedges).
	Err            error
	Steady, Shift  Phase
	Outage         Phase
	OutageMeasured bool
	Conns          int64 // TCP connections the server accepted, both phases
	// Cancelled counts the attempts of both phases whose client went away
	// before the answer (hedges that lost), counted once every handler
	// has returned.
	Cancelled int64
}

// Run runs both phases for kind on a fresh server and a fresh pooled base:
// logical requests 0..Requests-1 at the steady median, then as many at the
// shifted median, through one client, so an adaptive delay carries what it
// learnt into the shift. The error is the caller's context ending; a kind
// that cannot be built is reported in Result.Err.
func Run(ctx context.Context, kind Kind, cfg Config) (Result, error) {
	res := Result{Kind: kind.Name}
	n := cfg.Requests
	shifted := time.Duration(float64(cfg.Median) * cfg.Shift)
	srv := startServer(2*n, func(id, attempt int) time.Duration {
		if id < n {
			return cfg.Latency(cfg.Median, id, attempt)
		}
		return cfg.Latency(shifted, id, attempt)
	})
	base := bench.NewBase()
	client, err := kind.New(base, 0)
	if err != nil {
		srv.close()
		res.Err = err
		return res, nil
	}
	res.Steady = drive(ctx, client, srv, 0, n, cfg.Workers)
	res.Shift = drive(ctx, client, srv, n, 2*n, cfg.Workers)
	client.CloseIdleConnections()
	base.CloseIdleConnections()
	srv.close()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Steady.Attempts = srv.hits(0, n)
	res.Shift.Attempts = srv.hits(n, 2*n)
	res.Conns = srv.conns.Load()
	res.Cancelled = srv.cancelled.Load()
	return res, nil
}

// RunOutage runs the outage check for kind: every attempt answers only
// after OutageLatency, the client's per-attempt timeout is OutageTimeout.
func RunOutage(ctx context.Context, kind Kind, cfg Config) (Phase, error) {
	n := cfg.OutageRequests
	srv := startServer(n, func(int, int) time.Duration { return cfg.OutageLatency })
	base := bench.NewBase()
	client, err := kind.New(base, cfg.OutageTimeout)
	if err != nil {
		srv.close()
		return Phase{}, err
	}
	p := drive(ctx, client, srv, 0, n, cfg.Workers)
	client.CloseIdleConnections()
	base.CloseIdleConnections()
	srv.close()
	if err := ctx.Err(); err != nil {
		return p, err
	}
	p.Attempts = srv.hits(0, n)
	p.Cancelled = srv.cancelled.Load()
	return p, nil
}

// drive sends logical requests lo..hi-1 from workers callers and measures
// each from the call to the end of its body.
func drive(ctx context.Context, c *http.Client, srv *server, lo, hi, workers int) Phase {
	cancelledBefore := srv.cancelled.Load()
	lat := make([]time.Duration, hi-lo)
	errs := make([]error, hi-lo)
	ids := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for id := range ids {
				start := time.Now()
				errs[id-lo] = get(ctx, c, srv.url(), id)
				lat[id-lo] = time.Since(start)
			}
		})
	}
feed:
	for id := lo; id < hi; id++ {
		select {
		case ids <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	p := Phase{Requests: hi - lo, Cancelled: srv.cancelled.Load() - cancelledBefore}
	for _, err := range errs {
		if err != nil {
			p.Failed++
			if p.FirstErr == nil {
				p.FirstErr = err
			}
		}
	}
	slices.Sort(lat)
	p.lat = lat
	p.P50 = quantileOf(lat, 0.50)
	p.P99 = quantileOf(lat, 0.99)
	return p
}

// get is one logical request: nil when it ends in 200 "ok". A generous
// deadline keeps a misbehaving kind from hanging the run.
func get(ctx context.Context, c *http.Client, url string, id int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set(IDHeader, strconv.Itoa(id))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != answer {
		return fmt.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	return nil
}

func quantileOf(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// unit maps (seed, id, n, k) to [0,1) with splitmix64.
func unit(seed, id, n, k uint64) float64 {
	x := seed ^ id*0x9e3779b97f4a7c15 ^ n*0xbf58476d1ce4e5b9 ^ k*0x94d049bb133111eb
	for range 2 {
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
	}
	return float64(x>>11) / (1 << 53)
}

// Markdown writes the results as the two tables of the README: the
// latency table, then the outage table for the kinds whose outage was
// measured.
func Markdown(w io.Writer, results []Result) {
	var b strings.Builder
	b.WriteString("| client | p99 steady | extra attempts steady | p99 shift run | extra shift run | p99 after the shift | extra after the shift |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(&b, "| %s | unavailable: %s | | | | | |\n", r.Kind, oneLine(r.Err))
			continue
		}
		w := r.Whole()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Kind,
			ms(r.Steady.P99)+failed(r.Steady), pct(r.Steady.Extra()),
			ms(w.P99)+failed(w), pct(w.Extra()),
			ms(r.Shift.P99), pct(r.Shift.Extra()))
	}
	header := "\n| client (outage) | attempts per request | succeeded | p99 | attempts cancelled at the server |\n| --- | ---: | ---: | ---: | ---: |\n"
	for _, r := range results {
		if r.Err != nil || !r.OutageMeasured {
			continue
		}
		b.WriteString(header)
		header = ""
		o := r.Outage
		fmt.Fprintf(&b, "| %s | %.2f | %d of %d | %s | %d |\n", r.Kind, o.Amplification(),
			o.Requests-o.Failed, o.Requests, ms(o.P99), o.Cancelled)
	}
	io.WriteString(w, b.String())
}

// Text writes the results as aligned text with every measure.
func Text(w io.Writer, results []Result) {
	fmt.Fprintf(w, "%-28s %10s %10s %8s %10s %10s %8s %10s %8s %8s %8s\n",
		"client", "p50 steady", "p99 steady", "extra", "p50 shift", "p99 shift", "extra", "p99 run", "extra", "failed", "conns")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(w, "%-28s unavailable: %s\n", r.Kind, oneLine(r.Err))
			continue
		}
		whole := r.Whole()
		fmt.Fprintf(w, "%-28s %10s %10s %8s %10s %10s %8s %10s %8s %8d %8d\n", r.Kind,
			ms(r.Steady.P50), ms(r.Steady.P99), pct(r.Steady.Extra()),
			ms(r.Shift.P50), ms(r.Shift.P99), pct(r.Shift.Extra()),
			ms(whole.P99), pct(whole.Extra()),
			whole.Failed, r.Conns)
	}
	header := fmt.Sprintf("\n%-28s %14s %10s %10s %10s\n", "client (outage)", "attempts/req", "succeeded", "p99", "cancelled")
	for _, r := range results {
		if r.Err != nil || !r.OutageMeasured {
			continue
		}
		io.WriteString(w, header)
		header = ""
		o := r.Outage
		fmt.Fprintf(w, "%-28s %14.2f %10d %10s %10d\n", r.Kind, o.Amplification(), o.Requests-o.Failed, ms(o.P99), o.Cancelled)
	}
}

func failed(p Phase) string {
	if p.Failed == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed: %s)", p.Failed, oneLine(p.FirstErr))
}

// oneLine is err's first line, fit for a table cell.
func oneLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return strings.ReplaceAll(msg, "|", "/")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
