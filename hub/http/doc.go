// Package http is the HTTP front door of a Weir process (weir serve and
// weir run with --http-listen): liveness at /healthz, readiness at
// /readyz with a JSON body naming what is not ready, and whatever handlers
// the process mounts, such as /metrics (built by cmd/weir, so that no core
// package imports a metrics library) and the dataset subscriptions.
//
// It holds no state of its own beyond its routes, its readiness checks
// and its connections.
//
// # Routes
//
//	GET /healthz   200 {"status":"ok"} while the process runs
//	GET /readyz    200 {"ready":true,"checks":{...}} or
//	               503 {"ready":false,"not_ready":{"hub":"closed",...},...}
//	/metrics       mounted with Options.Metrics
//	GET /v1/datasets/{name}/subscribe  SSE or WebSocket subscriptions (MountSubscriptions)
//	anything else  added with Server.Handle before Serve; cmd/weir adds
//	               GET /v1/tap/{target} (weir tap) and, for weir run,
//	               POST /-/reload
//
// # Security
//
// Options.Guard (internal/httpauth) serves HTTPS from certificate files
// reloaded when they change, optionally requiring client certificates,
// and checks bearer tokens: /metrics needs the metrics scope, the
// subscriptions the subscribe scope, a route added with Handle the admin
// scope (HandleScope names another); /healthz and /readyz stay open.
// Refusals are 401 with WWW-Authenticate: Bearer, or 403 for a token
// without the scope.
//
// # Adding routes
//
// A feature that serves over HTTP (the dataset subscriptions, for one)
// registers its handlers with Server.HandleScope (or Handle, for admin
// routes), using net/http.ServeMux
// patterns with a method and a /v1/ path, and a readiness check with
// AddCheck when it can be not ready. Handlers that stream hold their
// connection until the request's context ends; Shutdown ends them (an SSE
// subscription over HTTP/1 takes its connection over from the server and
// writes its response itself, closed when it ends: sseStream; a WebSocket
// one writes its messages to the connection that coder/websocket took
// over: wsStream). Both get live events as frames encoded once per
// dataset for every subscriber of their transport, written by the
// dataset's shared writers while they are caught up.
package http
