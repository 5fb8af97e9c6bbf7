package liveconfig_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

func ExampleWatchFile() {
	dir, _ := os.MkdirTemp("", "rtx-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "settings.toml")
	doc := func(attempts int) []byte {
		return fmt.Appendf(nil, "[default.resilience.retry.policies.fast_retry]\nattempts = %d\n", attempts)
	}
	os.WriteFile(path, doc(3), 0o644)

	factory, err := policy.LoadFile(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	updates := make(chan liveconfig.Update, 1)
	w, err := liveconfig.WatchFile(path, factory,
		liveconfig.OnUpdate(func(u liveconfig.Update) {
			if !u.Initial {
				updates <- u
			}
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()

	// An editor saves the file: write a temporary file, rename it over.
	os.WriteFile(path+".tmp", doc(5), 0o644)
	os.Rename(path+".tmp", path)

	u := <-updates
	p, _ := factory.Policy("fast_retry")
	fmt.Println("changed:", u.Changed, "attempts:", p.Attempts)
	// Output: changed: [fast_retry] attempts: 5
}

func ExampleWatch() {
	// A Source that serves one document and then waits: stores such as
	// etcd (package etcdsource) and Consul (package consulsource) report
	// every later version too.
	src := liveconfig.SourceFunc(func(ctx context.Context, report func(liveconfig.Change)) error {
		report(liveconfig.Change{
			Name:    "inline",
			Data:    []byte("[default.resilience.retry.policies.fast_retry]\nattempts = 4\n"),
			Version: "1",
		})
		<-ctx.Done()
		return nil
	})
	factory := policy.NewFactory(nil)
	w, err := liveconfig.Watch(context.Background(), src, factory)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	p, _ := factory.Policy("fast_retry")
	fmt.Println("attempts:", p.Attempts)
	// Output: attempts: 4
}
