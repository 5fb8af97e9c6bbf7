package rtx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/athomic-go/rtx/policy"
)

const scope = "github.com/athomic-go/rtx"

// WithTracerProvider sets where attempt spans go. Without it, the global
// provider is used, and only for requests whose context already carries a
// span (so that an untraced request costs nothing). A nil tp is ignored.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	})
}

// WithMeterProvider sets where metrics go; the default is the global
// provider. A nil mp is ignored.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	})
}

// WithPropagator sets how trace context is injected into each attempt's
// headers; the default is the global propagator. A nil p is ignored.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if p != nil {
			c.prop = p
		}
	})
}

// WithLogger sets the logger for retries (warning) and give-ups (error).
// Without one, nothing is logged. Logs carry the redacted URL, never
// headers or bodies. A nil l is ignored.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// durationBuckets are the OpenTelemetry HTTP semantic conventions'
// boundaries for request durations, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// delayBuckets extend them to the minutes a long policy waits.
var delayBuckets = append(slices.Clip(durationBuckets), 30, 60, 120, 300, 600)

// observer reports attempts, retries and give-ups to the hooks, the logger,
// the tracer and the meter.
type observer struct {
	operation string
	onRetry   func(RetryEvent)
	onFail    func(FailEvent)
	logger    *slog.Logger

	tracer      trace.Tracer
	alwaysTrace bool // a provider was given: trace every request
	prop        propagation.TextMapPropagator

	meter                                 metric.Meter
	attempts, failures, aborts, exhausted metric.Int64Counter
	hedges                                metric.Int64Counter
	delays, duration                      metric.Float64Histogram

	attrs cowMap[attrKey, attrOpts] // cached so that recording does not allocate

	epoch time.Time // of the engine's clock: times come as engine times
}

type attrOpts struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

type attrKey struct{ policy, method, class string }

// newObserver makes the instruments of an engine whose clock starts at
// epoch (see engine.clock).
func newObserver(c *config, epoch time.Time) *observer {
	o := &observer{operation: c.operation, onRetry: c.onRetry, onFail: c.onFail, logger: c.logger, prop: c.prop, epoch: epoch}
	tp := c.tp
	o.alwaysTrace = tp != nil
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	o.tracer = tp.Tracer(scope)
	if o.prop == nil {
		o.prop = otel.GetTextMapPropagator()
	}
	mp := c.mp
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scope)
	o.meter = m
	// Instrument errors only come from invalid names; ours are constants.
	o.attempts, _ = m.Int64Counter("retry.attempts", metric.WithDescription("Retries made (n-1 for n tries)."))
	o.failures, _ = m.Int64Counter("retry.failures", metric.WithDescription("Retry loops that gave up."))
	o.aborts, _ = m.Int64Counter("retry.circuit_breaker.aborts", metric.WithDescription("Retry loops stopped by an open circuit."))
	o.hedges, _ = m.Int64Counter("retry.hedges", metric.WithDescription("Hedges sent; won says whether the hedge's answer was the one handed back."))
	o.exhausted, _ = m.Int64Counter("retry.budget.exhausted", metric.WithDescription("Retries refused by an exhausted retry budget."))
	o.delays, _ = m.Float64Histogram("retry.delay", metric.WithUnit("s"), metric.WithDescription("Delays before retries."),
		metric.WithExplicitBucketBoundaries(delayBuckets...))
	o.duration, _ = m.Float64Histogram("http.client.request.duration", metric.WithUnit("s"), metric.WithDescription("Duration of each attempt."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	return o
}

// opts returns the cached attribute options for a policy, method and class.
func (o *observer) opts(pol *policy.Policy, method, class string) attrOpts {
	k := attrKey{pol.Name, method, class}
	if opts, ok := o.attrs.load(k); ok {
		return opts
	}
	return o.attrs.loadOrStore(k, maxAttributes, func(attrOpts) bool { return true }, func() attrOpts {
		kv := []attribute.KeyValue{attribute.String("operation", o.operation), attribute.String("policy", policyName(pol))}
		if method != "" {
			kv = append(kv, attribute.String("http.request.method", method))
		}
		if class != "" {
			kv = append(kv, attribute.String("class", class))
		}
		set := metric.WithAttributeSet(attribute.NewSet(kv...))
		return attrOpts{rec: []metric.RecordOption{set}, add: []metric.AddOption{set}}
	})
}

// attemptSpan is one attempt's span, or the zero value when untraced.
type attemptSpan struct {
	span  trace.Span
	start int64 // engine time (see engine.clock), when timed
	timed bool  // start was read: the duration metric had a listener
}

// startCall opens the span of a logical request when its attempts are
// traced and the caller's context has no span to put them under, so that
// the attempts of one request share one trace. The span is named by the
// method, of kind INTERNAL; it is nil when none was opened.
func (o *observer) startCall(ctx context.Context, req *http.Request) (context.Context, trace.Span) {
	if !o.alwaysTrace || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return o.tracer.Start(ctx, spanName(req), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("url.full", RedactURL(req.URL))))
}

// endCall ends a logical request's span: now, or when the body of the
// response handed back is read to its end or closed.
func endCall(span trace.Span, resp *http.Response) {
	if span == nil {
		return
	}
	if resp == nil {
		span.End()
		return
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, span: span}
}

// spanBody ends a span once, at EOF or Close.
type spanBody struct {
	io.ReadCloser
	span trace.Span
	once sync.Once
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(func() { b.span.End() })
	}
	return n, err
}

func (b *spanBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.span.End() })
	return err
}

// startAttempt opens an attempt's span and returns the request to send,
// carrying the span's context and headers. Untraced requests come back
// unchanged.
func (o *observer) startAttempt(ctx context.Context, req *http.Request, pol *policy.Policy, attempt int, hedge bool, start int64, timed bool) (*http.Request, attemptSpan) {
	a := attemptSpan{start: start, timed: timed}
	if !o.alwaysTrace && !trace.SpanContextFromContext(ctx).IsValid() {
		return req, a
	}
	m := knownMethod(method(req))
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", m),
		attribute.String("server.address", req.URL.Hostname()),
		attribute.String("url.full", RedactURL(req.URL)),
		attribute.String("rtx.policy", policyName(pol)),
	}
	if p := req.URL.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			attrs = append(attrs, attribute.Int("server.port", n))
		}
	}
	if m == "_OTHER" {
		attrs = append(attrs, attribute.String("http.request.method_original", method(req)))
	}
	if attempt > 1 {
		attrs = append(attrs, attribute.Int("http.request.resend_count", attempt-1))
	}
	if hedge {
		attrs = append(attrs, attribute.Bool("rtx.hedge", true))
	}
	ctx, a.span = o.tracer.Start(ctx, spanName(req), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	r2 := req.WithContext(ctx)
	r2.Header = req.Header.Clone()
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	o.prop.Inject(ctx, propagation.HeaderCarrier(r2.Header))
	return r2, a
}

// timed reports whether an attempt's duration is recorded: whether its
// start must be read from the clock.
func (o *observer) timed(ctx context.Context) bool { return o.duration.Enabled(ctx) }

// attemptDone records an attempt's duration and outcome; its span stays
// open for the events of what the loop does next.
func (o *observer) attemptDone(req *http.Request, pol *policy.Policy, out *outcome) {
	a := out.span
	if a.timed { // the start was read because an SDK listened: no clock read or look-up otherwise
		ctx := req.Context()
		o.duration.Record(ctx, time.Duration(int64(time.Since(o.epoch))-a.start).Seconds(), o.opts(pol, knownMethod(method(req)), out.class).rec...)
	}
	if a.span == nil {
		return
	}
	if out.resp != nil {
		a.span.SetAttributes(attribute.Int("http.response.status_code", out.resp.StatusCode))
	}
	if et := errorType(out); et != "" {
		a.span.SetAttributes(attribute.String("error.type", et))
		a.span.SetStatus(codes.Error, et)
	}
	if out.class != "" {
		a.span.SetAttributes(attribute.String("rtx.class", out.class))
	}
}

// end ends the span, if any.
func (a attemptSpan) end() {
	if a.span != nil {
		a.span.End()
	}
}

// event adds an event to the attempt's span, if traced.
func (a attemptSpan) event(name string, attrs ...attribute.KeyValue) {
	if a.span != nil {
		a.span.AddEvent(name, trace.WithAttributes(attrs...))
	}
}

// errorType follows the HTTP semantic conventions: the status code for
// 4xx/5xx answers, the class (or "_OTHER") for errors.
func errorType(out *outcome) string {
	switch {
	case out.err != nil && out.class != "":
		return out.class
	case out.err != nil:
		return "_OTHER"
	case out.resp != nil && out.resp.StatusCode >= 400:
		return strconv.Itoa(out.resp.StatusCode)
	}
	return ""
}

func (o *observer) retry(ctx context.Context, req *http.Request, pol *policy.Policy, out outcome, delay time.Duration) {
	opts := o.opts(pol, "", out.class)
	o.attempts.Add(ctx, 1, opts.add...)
	o.delays.Record(ctx, delay.Seconds(), opts.rec...)
	out.span.event("rtx.retry_scheduled", attribute.Float64("rtx.delay_seconds", delay.Seconds()), attribute.Int("rtx.attempt", out.attempt))
	status, m, u := describe(req, out)
	ev := RetryEvent{Operation: o.operation, Policy: policyName(pol), Attempt: out.attempt, Delay: delay,
		Class: out.class, StatusCode: status, Err: out.err, Method: m, URL: u}
	if o.logger != nil {
		o.logger.LogAttrs(ctx, slog.LevelWarn, "rtx: retrying",
			append(o.logAttrs(pol, out, status, m, u),
				slog.Int("attempt", ev.Attempt), slog.Float64("wait_seconds", delay.Seconds()))...)
	}
	if o.onRetry != nil {
		o.onRetry(ev)
	}
}

// watch reports the state of the engine's circuits as the gauge
// retry.circuit_breaker.state (0 closed, 1 half-open, 2 open), one series
// per circuit, for as long as owner (the Transport or Retrier) is
// reachable. Each engine registers its own callback, so every Transport on
// a meter provider is reported; the callback goes when owner is collected.
func watch[T any](owner *T, e *engine) {
	gauge, err := e.obs.meter.Int64ObservableGauge("retry.circuit_breaker.state",
		metric.WithDescription("Circuit state: 0 closed, 1 half-open, 2 open."))
	if err != nil {
		return
	}
	op := attribute.String("operation", e.cfg.operation)
	reg, err := e.obs.meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		e.eachCircuit(func(c *circuit) {
			obs.ObserveInt64(gauge, int64(c.state.Load()), metric.WithAttributes(op, attribute.String("circuit", c.name)))
		})
		return nil
	}, gauge)
	if err != nil {
		return
	}
	runtime.AddCleanup(owner, func(r metric.Registration) { r.Unregister() }, reg)
}

// hedged counts a call's hedges, saying whether one of them won.
func (o *observer) hedged(ctx context.Context, pol *policy.Policy, hedges int, won bool) {
	if hedges == 0 {
		return
	}
	base := []attribute.KeyValue{attribute.String("operation", o.operation), attribute.String("policy", policyName(pol))}
	lost := hedges
	if won {
		o.hedges.Add(ctx, 1, metric.WithAttributes(append(base, attribute.Bool("won", true))...))
		lost--
	}
	if lost > 0 {
		o.hedges.Add(ctx, int64(lost), metric.WithAttributes(append(base, attribute.Bool("won", false))...))
	}
	if o.logger != nil {
		o.logger.LogAttrs(ctx, slog.LevelDebug, "rtx: hedged", slog.String("operation", o.operation),
			slog.String("policy", policyName(pol)), slog.Int("hedges", hedges), slog.Bool("won", won))
	}
}

// refused counts a request whose first attempt an open circuit refused.
func (o *observer) refused(ctx context.Context, pol *policy.Policy) {
	o.aborts.Add(ctx, 1, o.opts(pol, "", "").add...)
}

func (o *observer) fail(ctx context.Context, req *http.Request, pol *policy.Policy, out outcome, reason Reason) {
	opts := o.opts(pol, "", out.class).add
	o.failures.Add(ctx, 1, opts...)
	switch reason {
	case ReasonCircuitOpen:
		o.aborts.Add(ctx, 1, opts...)
		out.span.event("rtx.circuit_open")
	case ReasonBudget:
		o.exhausted.Add(ctx, 1, opts...)
		out.span.event("rtx.budget_exhausted")
	}
	status, m, u := describe(req, out)
	ev := FailEvent{Operation: o.operation, Policy: policyName(pol), Attempts: out.attempt, Class: out.class,
		Reason: reason, StatusCode: status, Err: out.err, Method: m, URL: u}
	if o.logger != nil {
		attrs := append(o.logAttrs(pol, out, status, m, u), slog.Int("attempts", ev.Attempts), slog.String("reason", string(reason)))
		if h := reason.hint(); h != "" {
			attrs = append(attrs, slog.String("hint", h))
		}
		o.logger.LogAttrs(ctx, slog.LevelError, "rtx: giving up", attrs...)
	}
	if o.onFail != nil {
		o.onFail(ev)
	}
}

// describe returns what events and logs say of an attempt: its status, and
// the request's method and redacted URL (empty for Do).
func describe(req *http.Request, out outcome) (status int, m, u string) {
	if out.resp != nil {
		status = out.resp.StatusCode
	}
	if req != nil {
		m, u = method(req), RedactURL(req.URL)
	}
	return status, m, u
}

// logAttrs returns the log fields common to retries and give-ups.
func (o *observer) logAttrs(pol *policy.Policy, out outcome, status int, method, url string) []slog.Attr {
	attrs := []slog.Attr{slog.String("operation", o.operation), slog.String("policy", policyName(pol)), slog.String("class", out.class)}
	if method != "" {
		attrs = append(attrs, slog.String("method", method), slog.String("url", url))
	}
	if status != 0 {
		attrs = append(attrs, slog.Int("status", status))
	}
	if out.err != nil {
		attrs = append(attrs, slog.String("error", redactError(out.err)))
	}
	return attrs
}

func method(r *http.Request) string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

// spanName names a request's spans: its method, or "HTTP" for a method
// the HTTP semantic conventions do not know.
func spanName(req *http.Request) string {
	if m := knownMethod(method(req)); m != "_OTHER" {
		return m
	}
	return "HTTP"
}

// knownMethod returns m if it is one of the methods of RFC 9110 or PATCH,
// else "_OTHER", as the HTTP semantic conventions ask: custom methods must
// not make new series.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// RedactURL renders u without userinfo and with every query value replaced
// by "REDACTED", so that it can be logged: keys with a value are kept
// (sorted, one each), while bare parameters, which are values in all but
// name ("?s3cr3t"), are replaced as a whole by one "REDACTED" after them.
// A query that does not parse is "REDACTED" as a whole. The fragment is
// dropped. A nil u is "".
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}
	if u.RawQuery != "" {
		r.RawQuery = redactQuery(u.RawQuery)
	}
	return r.String()
}

func redactQuery(raw string) string {
	q := url.Values{}
	bare := false
	for part := range strings.SplitSeq(raw, "&") {
		key, _, hasValue := strings.Cut(part, "=")
		switch {
		case part == "":
		case strings.Contains(part, ";"):
			return "REDACTED" // url.ParseQuery's error
		case !hasValue:
			bare = true
		default:
			k, err := url.QueryUnescape(key)
			if err != nil {
				return "REDACTED"
			}
			q[k] = []string{"REDACTED"}
		}
	}
	enc := q.Encode()
	if bare {
		if enc != "" {
			enc += "&"
		}
		enc += "REDACTED"
	}
	return enc
}

// redactError renders err with the URL of any *url.Error in it redacted
// (http.Client's errors quote the whole URL, secrets included).
func redactError(err error) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.URL != "" {
		red := "REDACTED-URL"
		if u, perr := url.Parse(ue.URL); perr == nil {
			red = RedactURL(u)
		}
		msg = strings.ReplaceAll(msg, ue.URL, red)
	}
	return msg
}
