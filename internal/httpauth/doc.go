// Package httpauth guards Weir's HTTP listeners (the front door of weir
// serve and weir run, the http source): HTTPS from PEM files reloaded when
// they change (internal/tlsfiles), optionally with client certificates
// (mutual TLS); bearer tokens with scopes, from a token file read again
// when it changes or given inline; and the warning logged for a listener
// reachable beyond loopback that authenticates nobody.
//
// # Tokens and scopes
//
// A token file holds one token a line, each with the scopes it grants:
//
//	# comment
//	TOKEN                    every scope
//	TOKEN  metrics           GET /metrics
//	TOKEN  subscribe         GET /v1/datasets/{name}/subscribe, GET /v1/tap/{target}
//	TOKEN  produce           POST to the http source
//	TOKEN  admin             POST /-/reload, and any route mounted without a scope
//	TOKEN  metrics,subscribe several
//
// Clients send Authorization: Bearer TOKEN; a GET may carry
// ?access_token=TOKEN instead (RFC 6750 section 2.3), for a browser's
// EventSource, which cannot set headers (the URL may then show in proxy
// logs: prefer the header). Refusals follow RFC 6750: 401 with
// WWW-Authenticate: Bearer when the token is missing or unknown, 403 with
// error="insufficient_scope" when it lacks the route's scope. /healthz and
// /readyz stay open: they tell only whether the process runs and is ready.
//
// Tokens are kept as SHA-256 digests and compared in constant time; no
// log line, error or metric holds one. Refused tokens are logged at most
// once a second, with a count. An address that presents 10 unknown tokens
// in a minute is answered 429 without checking until the minute has passed
// (auth.FailureLimiter, as on the Kafka listeners).
package httpauth
