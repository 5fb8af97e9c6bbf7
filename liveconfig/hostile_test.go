package liveconfig_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

// A watched file replaced by a hostile document (nested a million levels
// deep, then over 1 MiB) changes nothing: the settings in force stay, and
// each rejection goes to OnError and to the factory's Status.
func TestWatchFileHostileDocuments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.toml")
	f := load(t, path, 3)
	var rec recorder
	w, err := liveconfig.WatchFile(path, f, append(rec.Options(), liveconfig.WithDebounce(time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	before := f.Status()

	for _, tc := range []struct {
		name, doc string
		want      error
	}{
		{"deep", "x = " + strings.Repeat("[", 1_000_000), policy.ErrTooDeep},
		{"large", settings(5) + strings.Repeat("# padding\n", policy.MaxDocumentSize/10), policy.ErrTooLarge},
	} {
		renameOver(t, path, tc.doc)
		eventually(t, 5*time.Second, tc.name+" document reported", func() bool { return rec.HasError(tc.want) })
		var ie *liveconfig.InvalidError
		for _, err := range rec.Errors() {
			if errors.Is(err, tc.want) && !errors.As(err, &ie) {
				t.Errorf("%s: %v is not an *InvalidError", tc.name, err)
			}
		}
		if got := attempts(t, f, "fast_retry"); got != 3 {
			t.Fatalf("%s: attempts %d, want the 3 in force", tc.name, got)
		}
		st := f.Status()
		if st.Version != before.Version || st.Rejected == nil || st.Rejected.Source != path ||
			!strings.Contains(st.Rejected.Err, tc.want.Error()) || st.Rejected.At.Before(before.Applied) {
			t.Fatalf("%s: Status = %+v (rejected %+v), want version %d and the rejection", tc.name, st, st.Rejected, before.Version)
		}
	}

	// A good document afterwards is applied and counted.
	renameOver(t, path, settings(4))
	eventually(t, 5*time.Second, "good document applied", func() bool { return attempts(t, f, "fast_retry") == 4 })
	if st := f.Status(); st.Version != before.Version+1 || st.Source != path || st.Rejected == nil {
		t.Errorf("after a good update: Status = %+v, want version %d with the last rejection kept", st, before.Version+1)
	}
}
