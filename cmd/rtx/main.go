// Command rtx shows, checks and tries the retry policies of an rtx settings
// file before they ship:
//
//	rtx plan  [--config settings.toml] [--env NAME] [--policy NAME] [--svg FILE] [--png FILE]
//	rtx check [--config settings.toml] [--env NAME] [--strict] [--max-wait 60s]
//	rtx get   [--config settings.toml] [--policy NAME] [-X METHOD] [-d DATA] [-H 'K: V']... URL
//
// Exit status: 0 on success, 1 on load errors, check findings that fail
// (errors, or warnings with --strict) and failed requests, 2 on bad usage.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(report(err, os.Stderr))
}
