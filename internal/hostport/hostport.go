// Package hostport holds the one definition of an upstream: the lower-cased
// host:port of a URL (ASCII letters lower-cased: hosts on the wire are
// ASCII), the scheme's default port filled in.
package hostport

import "net/url"

// Append appends the upstream of u to b and returns the extended slice. It
// allocates only when b lacks the room.
func Append(b []byte, u *url.URL) []byte {
	host := u.Host
	name, port := host, ""
	if i := lastColon(host); i >= 0 {
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
	ipv6 := false
	for i := 0; i < len(name); i++ {
		if name[i] == ':' {
			ipv6 = true
			break
		}
	}
	if ipv6 {
		b = append(b, '[')
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	if ipv6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	return append(b, port...)
}

// lastColon returns the index of the port separator of a URL host, or -1.
func lastColon(host string) int {
	for i := len(host) - 1; i >= 0; i-- {
		switch host[i] {
		case ':':
			return i
		case ']':
			return -1
		}
	}
	return -1
}
