//go:build nortx

package bench

import (
	"errors"
	"net/http"
)

var RTX = Library{Name: "rtx", New: func(base http.RoundTripper, p Policy) (http.RoundTripper, error) {
	return nil, errors.New("rtx not built")
}}
