package integration

// The snippets of the README's "Use it in an SDK" section, compiled, and run
// as far as building each SDK's client (nothing here talks to the network).

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-github/v75/github"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

// newS3 is the AWS SDK for Go v2 snippet. The SDK retries on its own (3
// attempts by default): turn that off, or every rtx attempt is multiplied
// by the SDK's.
func newS3(ctx context.Context, factory *policy.Factory) (*s3.Client, error) {
	httpClient := &http.Client{Transport: rtx.New(factory, "fast_retry")}
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(httpClient),
		config.WithRetryMaxAttempts(1), // rtx retries; the SDK must not
	)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg), nil
}

// newGitHub is the go-github snippet: NewClient takes the *http.Client.
func newGitHub(factory *policy.Factory) *github.Client {
	return github.NewClient(&http.Client{Transport: rtx.New(factory, "fast_retry")})
}

// newPrometheus is the Prometheus HTTP API snippet: api.Config takes the
// RoundTripper itself.
func newPrometheus(factory *policy.Factory, address string) (v1.API, error) {
	client, err := api.NewClient(api.Config{
		Address:      address,
		RoundTripper: rtx.New(factory, "fast_retry"),
	})
	if err != nil {
		return nil, err
	}
	return v1.NewAPI(client), nil
}

// Configuration has the shape of the configuration that openapi-generator
// writes for a gRPC-gateway service's REST/JSON client (package openapi in
// generated code): an HTTPClient field.
type Configuration struct {
	HTTPClient *http.Client
}

// newGatewayConfig is the gRPC-gateway style snippet.
func newGatewayConfig(factory *policy.Factory) *Configuration {
	cfg := &Configuration{} // openapi.NewConfiguration() in generated code
	cfg.HTTPClient = &http.Client{Transport: rtx.New(factory, "fast_retry")}
	return cfg
}

// TestSnippets builds each SDK client from the snippets and checks that rtx
// is the transport it will use.
func TestSnippets(t *testing.T) {
	factory := loadSettings(t)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	// The SDK cannot add a CA bundle to a client it did not build: with
	// WithHTTPClient, trust goes in rtx's base transport (README caveat).
	t.Setenv("AWS_CA_BUNDLE", "")

	s3c, err := newS3(context.Background(), factory)
	if err != nil {
		t.Fatalf("newS3: %v", err)
	}
	opts := s3c.Options()
	if hc, ok := opts.HTTPClient.(*http.Client); !ok || !isRTX(hc.Transport) {
		t.Errorf("S3 client's HTTPClient = %T, want the *http.Client over rtx", opts.HTTPClient)
	}
	if n := opts.Retryer.MaxAttempts(); n != 1 {
		t.Errorf("S3 client's own retryer makes %d attempts, want 1", n)
	}

	if !isRTX(newGitHub(factory).Client().Transport) {
		t.Error("go-github client does not use rtx")
	}

	if _, err := newPrometheus(factory, "http://127.0.0.1:9090"); err != nil {
		t.Errorf("newPrometheus: %v", err)
	}

	if !isRTX(newGatewayConfig(factory).HTTPClient.Transport) {
		t.Error("gateway configuration does not use rtx")
	}
}

func isRTX(rt http.RoundTripper) bool {
	_, ok := rt.(*rtx.Transport)
	return ok
}
