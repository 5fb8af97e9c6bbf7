// Package hostport holds the one definition of an upstream: the lower-cased
// host:port of a URL (ASCII letters lower-cased: hosts on the wire are
// ASCII), the scheme's default port filled in.
package hostport

import (
	"net/url"
	"strings"
)

// Append appends the upstream of u to b and returns the extended slice. It
// allocates only when b lacks the room.
func Append(b []byte, u *url.URL) []byte {
	host := u.Host
	name, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i:], ']') < 0 {
		name, port = host[:i], host[i+1:]
	}
	if len(name) > 1 && name[0] == '[' && name[len(name)-1] == ']' {
		name = name[1 : len(name)-1]
	}
	if port == "" {
		if u.Scheme == "https" {
			port = "443"
		} else {
			port = "80"
		}
	}
	ipv6 := strings.IndexByte(name, ':') >= 0
	if ipv6 {
		b = append(b, '[')
	}
	n := len(b)
	b = append(b, name...)
	for i, c := range b[n:] {
		if 'A' <= c && c <= 'Z' {
			b[n+i] = c + 'a' - 'A'
		}
	}
	if ipv6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	return append(b, port...)
}
