package rtx

import "context"

type policyKey struct{}

// WithPolicy returns a context under which requests sent through any rtx
// [Transport] use the named policy instead of the transport's own. An
// unknown name makes those requests fail before any I/O.
func WithPolicy(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, policyKey{}, name)
}

// PolicyFrom returns the policy name set by [WithPolicy], if any.
func PolicyFrom(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(policyKey{}).(string)
	return name, ok
}
