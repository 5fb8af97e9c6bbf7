package policy

import (
	"fmt"
	"net/http"
	"slices"
)

// The built-in classes. A class covers its descendants, as Python's except
// does: listing HTTPException retries every class below it.
const (
	// Exception is the root of the tree, as Python's Exception: any error.
	// For a function retrier it covers every error the function returns;
	// for the transport, HTTPException and errors of a custom base
	// transport that no other class covers.
	Exception = "Exception"
	// HTTPException covers every classified HTTP failure: every class
	// below. Its parent is Exception.
	HTTPException = "HTTPException"
	// HTTPRequestError covers failures with no response that are not
	// timeouts (refused, reset, aborted, broken pipe, unexpected EOF,
	// temporary DNS failures) and the transient statuses 408, 429 and 5xx
	// but 501 and 505.
	HTTPRequestError = "HTTPRequestError"
	// ConnectionError is the connection-level subset of HTTPRequestError:
	// refused, reset, aborted, broken pipe, EOF before a response.
	ConnectionError = "ConnectionError"
	// HTTPTimeoutError covers client-side timeouts: the per-attempt timeout,
	// net.Error timeouts, TLS handshake and response-header timeouts.
	HTTPTimeoutError = "HTTPTimeoutError"
)

// Class is a user-defined class of failure. Register it with [WithClass];
// policies may then name it in their exceptions list, and rtx tries its
// Match before the built-in rules, in registration order.
type Class struct {
	// Name is how settings files refer to the class. It must be new.
	Name string
	// Parent is an existing class (built-in or registered earlier). A policy
	// listing the parent retries this class too.
	Parent string
	// Match reports whether an attempt's outcome belongs to the class. It
	// sees the response (err == nil) or the error (resp == nil) and must not
	// read or close the response body. It must be safe for concurrent use.
	Match func(resp *http.Response, err error) bool
}

// Classes is the class tree a snapshot validates against: the built-in
// classes plus the user's. It is immutable and safe for concurrent use.
type Classes struct {
	parent map[string]string
	user   []Class
}

func builtinClasses() *Classes {
	return &Classes{parent: map[string]string{
		Exception:        "",
		HTTPException:    Exception,
		HTTPRequestError: HTTPException,
		ConnectionError:  HTTPRequestError,
		HTTPTimeoutError: HTTPException,
	}}
}

// withUser returns a tree with the user's classes added, or an error naming
// the class that cannot be added.
func (c *Classes) withUser(user []Class) (*Classes, error) {
	out := &Classes{parent: make(map[string]string, len(c.parent)+len(user)), user: slices.Clone(user)}
	for k, v := range c.parent {
		out.parent[k] = v
	}
	for _, u := range user {
		switch {
		case u.Name == "":
			return nil, fmt.Errorf("policy: class with parent %q has an empty name", u.Parent)
		case u.Match == nil:
			return nil, fmt.Errorf("policy: class %q has no Match func", u.Name)
		}
		if _, dup := out.parent[u.Name]; dup {
			return nil, fmt.Errorf("policy: class %q is already defined", u.Name)
		}
		if _, ok := out.parent[u.Parent]; !ok {
			return nil, fmt.Errorf("policy: class %q: unknown parent %q (known: %s)", u.Name, u.Parent, listShort(out.Names(), maxListed))
		}
		out.parent[u.Name] = u.Parent
	}
	return out, nil
}

// Is reports whether class is ancestor or one of its descendants.
func (c *Classes) Is(class, ancestor string) bool {
	for seen := 0; seen <= len(c.parent); seen++ {
		if class == ancestor {
			return true
		}
		p, ok := c.parent[class]
		if !ok || p == "" {
			return false
		}
		class = p
	}
	return false
}

// Known reports whether name is a class of the tree.
func (c *Classes) Known(name string) bool {
	_, ok := c.parent[name]
	return ok
}

// Names returns every class name, sorted.
func (c *Classes) Names() []string {
	names := make([]string, 0, len(c.parent))
	for k := range c.parent {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// User returns the user-defined classes in registration order. The caller
// must not modify the slice.
func (c *Classes) User() []Class { return c.user }

// covered returns the set of classes that a list of exceptions retries.
func (c *Classes) covered(exceptions []string) map[string]bool {
	set := make(map[string]bool, len(c.parent))
	for name := range c.parent {
		for _, e := range exceptions {
			if c.Is(name, e) {
				set[name] = true
				break
			}
		}
	}
	return set
}
