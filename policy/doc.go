// Package policy holds rtx's retry policies: the [Policy] model, the delay
// formula, the class tree that policies name in their exceptions list, and
// the [Factory] that serves named policies from an immutable [Snapshot].
//
// A settings file is read once with [LoadFile] (TOML, YAML or JSON, chosen by
// the file's extension), validated in full, and published as a snapshot.
// Running transports read the snapshot once per logical request; [Factory.Update]
// and [Factory.Swap] replace it atomically, so a live change applies to the
// next request and never halfway through one.
//
// The layout follows the seed's settings.toml:
//
//	[default]
//	deployment_mode = "standalone"          # "mesh": every policy is one attempt
//
//	[default.resilience.retry]
//	enabled = true                          # false: every policy is one attempt
//
//	  [default.resilience.retry.default_policy]
//	  attempts = 3
//	  wait_min_seconds = 1.0
//	  wait_max_seconds = 10.0
//	  backoff = 2.0
//	  exceptions = ["HTTPRequestError", "HTTPTimeoutError"]
//
//	  [default.resilience.retry.policies.fast_retry]
//	  attempts = 3
//	  wait_min_seconds = 0.1
//	  wait_max_seconds = 1.0
//	  backoff = 1.5
//	  exceptions = ["HTTPException"]
//
// Environment overlays ([production...]) are merged over [default] key by key
// when RTX_ENV or [WithEnv] names them, and RTX_ variables override single keys:
// RTX_RESILIENCE__RETRY__POLICIES__FAST_RETRY__ATTEMPTS=5.
//
// A file whose tables start at [resilience] (no environment level), as the
// seed's own words put it, is read as the [default] layer; [Snapshot.Layout]
// says which layers and top-level tables were read. An environment the file
// has no table for is an error that lists the ones it has.
//
// No parser sees a document over [MaxDocumentSize], nested deeper than
// [MaxDepth], or holding more than [MaxKeys] keys or [MaxValues] values: a
// linear scan rejects it first, on every path ([LoadFile], [Factory.Parse],
// [Factory.Update], [Factory.Apply], and so the live sources). Within those
// limits every shape of document decodes in well under a second. Parse
// errors carry the line and column: settings.toml:3:7: toml: expected
// character ].
//
// [Factory.Status] reports, without locks, the version, source and time of
// the snapshot in force and the last rejected update, for a debug page.
//
// Nothing in this package keeps package-level mutable state; viper is used
// only while loading, never on the request path.
package policy
