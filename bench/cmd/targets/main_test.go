package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMedians(t *testing.T) {
	out := `goos: linux
BenchmarkGET/lib=bare-2         	   20000	      1000 ns/op	     424 B/op	       7 allocs/op
BenchmarkGET/lib=bare-2         	   20000	      3000 ns/op	     424 B/op	       7 allocs/op
BenchmarkGET/lib=bare-2         	   20000	      2000 ns/op	     424 B/op	       7 allocs/op
BenchmarkPOSTStream/lib=failsafe-go-2	20000	151666 ns/op	 432.11 MB/s	  141039 B/op	      61 allocs/op
BenchmarkPOSTStream/lib=failsafe-go-2	20000	151660 ns/op	 432.11 MB/s	  141041 B/op	      61 allocs/op
BenchmarkFirstTry/hosts=1000/lib=rtx-circuits-2	 1000000	      1500 ns/op	     424 B/op	       7 allocs/op
BenchmarkFirstTryTimeout/hosts=100000/lib=rtx	 1000000	      2500 ns/op	     524 B/op	       9 allocs/op
PASS
`
	med, err := medians(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[key]float64{
		{"GET", "bare", "ns/op"}:                             2000,
		{"GET", "bare", "allocs/op"}:                         7,
		{"POSTStream", "failsafe-go", "B/op"}:                141040,
		{"POSTStream", "failsafe-go", "MB/s"}:                432.11,
		{"POSTStream", "failsafe-go", "ns/op"}:               151663,
		{"FirstTry/hosts=1000", "rtx-circuits", "ns/op"}:     1500,
		{"FirstTryTimeout/hosts=100000", "rtx", "allocs/op"}: 9,
	} {
		if got := med[k]; got != want {
			t.Errorf("%v = %v, want %v", k, got, want)
		}
	}
}
