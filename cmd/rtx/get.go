package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

type getFlags struct {
	policy   string
	method   string
	data     string
	headers  []string
	fail     bool
	location bool
	maxTime  time.Duration
}

func newGetCmd(sf *settingsFlags) *cobra.Command {
	var gf getFlags
	cmd := &cobra.Command{
		Use:   "get URL",
		Short: "Send one request through the rtx transport, showing each attempt",
		Long: `get sends one request through the rtx transport under a policy of the
settings file, like curl with the policy applied: each attempt (its number,
class, status or error, and the wait before the next) goes to standard error,
the final response body to standard output.

Attempt lines never show header values or the URL's query values (they read
REDACTED), nor userinfo. Like curl, get does not follow redirects unless -L is
given, and exits 0 on any HTTP response unless --fail is given (then 1 on a
status of 400 or more). It exits 1 when the request fails with an error.

Without --config and with no settings.toml in the working directory, get
uses the built-in default policy and says so on standard error.`,
		Example: `  rtx get -c settings.toml -p fast_retry http://localhost:8080/health
  rtx get -c settings.toml -X PUT -d '{"n":1}' \
      -H 'Content-Type: application/json' http://localhost:8080/items/1
  rtx get -c settings.toml -d @body.json http://localhost:8080/items  # a POST`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(cmd, sf, &gf, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&gf.policy, "policy", "p", "", "policy to use (default: default_policy)")
	fl.StringVarP(&gf.method, "request", "X", "", "request method (default GET, or POST with -d)")
	fl.StringVarP(&gf.data, "data", "d", "", "request body; @FILE from a file, @- from stdin")
	fl.StringArrayVarP(&gf.headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	fl.BoolVarP(&gf.fail, "fail", "f", false, "exit 1 on a final status >= 400")
	fl.BoolVarP(&gf.location, "location", "L", false, "follow redirects")
	fl.DurationVarP(&gf.maxTime, "max-time", "m", 0, "time limit for the whole request (0: none)")
	return cmd
}

func runGet(cmd *cobra.Command, sf *settingsFlags, gf *getFlags, rawURL string) error {
	stderr := cmd.ErrOrStderr()
	f, err := sf.load()
	switch {
	case err != nil && errors.Is(err, fs.ErrNotExist) && !cmd.Flag("config").Changed:
		// No settings file where none was asked for: a quick try needs none.
		f = policy.NewFactory(nil)
		fmt.Fprintf(stderr, "rtx: no %s here: using the built-in default policy (--config FILE for yours)\n", sf.config)
	case err != nil:
		printFindings(stderr, loadFindings(err))
		return failed(err)
	}
	snap := f.Snapshot()
	pol, err := snap.Policy(gf.policy)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if gf.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, gf.maxTime)
		defer cancel()
	}
	req, red, err := buildRequest(ctx, cmd, gf, rawURL)
	if err != nil {
		return err
	}

	name := gf.policy
	if name == "" {
		name = "default"
	}
	fmt.Fprintf(stderr, "> %s %s (policy %s: %s)\n", req.Method, red.url, name, plural(pol.Attempts, "attempt"))
	if len(red.headerNames) > 0 {
		fmt.Fprintf(stderr, "> headers: %s (values not shown)\n", strings.Join(red.headerNames, ", "))
	}

	var (
		retries int
		fail    *rtx.FailEvent
	)
	of := fmt.Sprintf("/%d", pol.Attempts)
	tr := rtx.New(f, gf.policy,
		rtx.WithOperationName("rtx get"),
		rtx.OnRetry(func(ev rtx.RetryEvent) {
			retries = ev.Attempt
			fmt.Fprintf(stderr, "attempt %d%s: %s; retry in %s\n", ev.Attempt, of, red.outcome(ev.Class, ev.StatusCode, ev.Err), fmtDur(ev.Delay))
		}),
		rtx.OnFail(func(ev rtx.FailEvent) { fail = &ev }),
	)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if !gf.location {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}

	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message carries the whole URL
			err = ue.Err
		}
		attempts := retries + 1
		var re *rtx.RetryError
		if errors.As(err, &re) {
			attempts = re.Attempts
			fmt.Fprintf(stderr, "attempt %d%s: %s; %s\n", attempts, of, red.outcome(re.Class, 0, re.Err), givingUp(re.Reason, req.Method))
		} else {
			fmt.Fprintf(stderr, "attempt %d%s: %s\n", attempts, of, red.outcome(rtx.Classify(snap.Classes(), nil, err), 0, err))
		}
		return failed(errors.New(red.text(err.Error())))
	}
	defer resp.Body.Close()

	class := rtx.Classify(snap.Classes(), resp, nil)
	line := fmt.Sprintf("attempt %d%s: %s", retries+1, of, red.outcome(class, resp.StatusCode, nil))
	switch {
	case fail != nil:
		line += "; " + givingUp(fail.Reason, req.Method)
	case class != "" && !pol.Retries(class):
		line += "; not retried: policy " + name + " does not list " + class
	}
	fmt.Fprintln(stderr, line)

	if _, err := io.Copy(cmd.OutOrStdout(), resp.Body); err != nil {
		return failed(fmt.Errorf("reading the response body: %w", err))
	}
	if gf.fail && resp.StatusCode >= 400 {
		return failed(fmt.Errorf("status %d", resp.StatusCode))
	}
	return nil
}

// givingUp says why the retries stopped, with what to do when the method
// was the reason. It is the one place get says so: the RetryError's own
// message, which carries the same advice, is not printed.
func givingUp(reason rtx.Reason, method string) string {
	s := "giving up: " + string(reason)
	if reason == rtx.ReasonNotIdempotent {
		s += " (" + method + " is retried only when never sent: send an Idempotency-Key header, " +
			"or set idempotency_key = true or retry_non_idempotent = true in the policy)"
	}
	return s
}

// buildRequest makes the request the flags describe, and the redactor for
// what get prints about it.
func buildRequest(ctx context.Context, cmd *cobra.Command, gf *getFlags, rawURL string) (*http.Request, *redactor, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, usageError(fmt.Errorf("want an http:// or https:// URL, got %q", redactRaw(rawURL)))
	}
	method := strings.ToUpper(gf.method)
	var body io.Reader
	dataSet := cmd.Flags().Changed("data")
	if dataSet {
		b, err := readData(cmd, gf.data)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b) // NewRequest sets GetBody: replayable
		if method == "" {
			method = http.MethodPost
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, nil, usageError(err)
	}
	red := &redactor{url: rtx.RedactURL(u), raw: []string{rawURL, u.String()}}
	for _, vs := range u.Query() {
		red.secrets = append(red.secrets, vs...)
	}
	if u.User != nil {
		red.secrets = append(red.secrets, u.User.String())
	}
	for _, h := range gf.headers {
		k, v, ok := strings.Cut(h, ":")
		k = textproto.TrimString(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, nil, usageError(fmt.Errorf("header %q: want 'Name: value'", k))
		}
		v = textproto.TrimString(v)
		if strings.EqualFold(k, "Host") {
			req.Host = v
		} else {
			req.Header.Add(k, v)
		}
		red.headerNames = append(red.headerNames, http.CanonicalHeaderKey(k))
		red.secrets = append(red.secrets, v)
	}
	if dataSet && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d does
	}
	return req, red, nil
}

// readData returns -d's body: the text itself, or a file's content (@FILE),
// or standard input (@-).
func readData(cmd *cobra.Command, data string) ([]byte, error) {
	name, ok := strings.CutPrefix(data, "@")
	switch {
	case !ok:
		return []byte(data), nil
	case name == "-":
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(name)
}

// redactor keeps header values, query values and userinfo out of what get
// prints: the URL is shown redacted, and any error text has them replaced.
type redactor struct {
	url         string   // the redacted URL
	raw         []string // the URL as given and as sent, replaced by url
	secrets     []string // header values, query values, userinfo: replaced by REDACTED
	headerNames []string
}

// minSecret is the shortest value replaced inside error texts: shorter ones
// would mangle unrelated words and digits, and reveal little.
const minSecret = 3

// text returns s with the request's secrets replaced by REDACTED.
func (r *redactor) text(s string) string {
	for _, raw := range r.raw {
		s = strings.ReplaceAll(s, raw, r.url)
	}
	for _, v := range r.secrets {
		if len(v) >= minSecret {
			s = strings.ReplaceAll(s, v, "REDACTED")
		}
	}
	return s
}

// outcome describes one attempt's outcome: "HTTPRequestError, 503 Service
// Unavailable", "200 OK", "ConnectionError, dial tcp ...: connection refused".
func (r *redactor) outcome(class string, status int, err error) string {
	var what string
	switch {
	case err != nil:
		what = r.text(err.Error())
	case status != 0:
		what = fmt.Sprintf("%d %s", status, http.StatusText(status))
	}
	if class == "" {
		return what
	}
	return class + ", " + what
}

// redactRaw hides everything after the path of a URL that did not parse.
func redactRaw(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?REDACTED"
	}
	if i := strings.Index(s, "@"); i >= 0 {
		s = "REDACTED" + s[i:]
	}
	return s
}
