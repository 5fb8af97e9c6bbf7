// Package liveconfig retunes a [policy.Factory] at runtime: it watches a
// settings document — a file by default, or any [Source] such as an etcd key
// (package etcdsource) or a Consul key (package consulsource) — and swaps
// the factory's snapshot each time the document changes.
//
//	f, err := policy.LoadFile("settings.toml")
//	...
//	w, err := liveconfig.WatchFile("settings.toml", f,
//		liveconfig.OnError(func(err error) { log.Print(err) }))
//	...
//	defer w.Close()
//	client := &http.Client{Transport: rtx.New(f, "fast_retry")}
//
// Every new version of the document is parsed and validated in full with the
// factory's load options ([policy.Factory.Parse]) and only then swapped in
// atomically. Requests read the snapshot once when they start, so a request
// in flight keeps the policy it started with and the next one sees the new
// values. A document that fails validation changes nothing: the last good
// snapshot stays in force and the error goes to [OnError] and the logger.
// A document identical to the last one seen (compared by hash) is skipped.
// A hostile document (over [policy.MaxDocumentSize], nested deeper than
// [policy.MaxDepth]) is rejected before any parser sees it. Every applied
// and rejected document shows in [policy.Factory.Status].
//
// The file watcher ([WatchFile]) watches the file's directory, not the file,
// so it follows in-place writes, editors and agents that write a temporary
// file and rename it over the original, and Kubernetes ConfigMap volumes,
// where the file is a symlink through "..data" and an update swaps that
// symlink. Bursts of events are debounced ([WithDebounce]). A deleted file
// leaves the settings in force; the watcher keeps watching and applies the
// file when it comes back.
//
// This package depends on fsnotify only; the etcd and Consul sources live in
// their own packages so that programs that do not use them do not link them.
// Nothing here keeps package-level mutable state or writes to stdout or
// stderr: failures go to [OnError] and, when one is given, the [slog.Logger].
package liveconfig
