// Package zinctest runs a real, Elasticsearch-compatible search server for
// integration tests: ZincSearch, a Go server with an ES-compatible API
// under /es. No Elasticsearch or OpenSearch can be installed on the
// machines Weir is built on, but ZincSearch builds from the Go module
// proxy alone.
//
// # Building
//
// [Start] builds ZincSearch once per machine and caches the binary under
// the user cache directory ($XDG_CACHE_HOME, else ~/.cache), in
// weir-test/zincsearch-<version>/. A lock file there keeps parallel test
// processes from building twice. The build runs in a temporary copy of
// the module as `go mod download` fetches it (never inside this
// repository, never from GitHub), with two changes the module needs to
// build outside its own CI: a stub web/dist/index.html (the embedded web
// UI is not part of the module) and the optional pyroscope profiler left
// out of cmd/zincsearch/main.go. A cold build takes minutes; progress is
// printed to standard error while it runs. A failed build fails the test
// with what failed and what to do; it never skips. The environment
// variable WEIR_ZINCSEARCH names a prebuilt binary to use instead.
//
// # Running
//
// Each [Start] runs its own server on a free 127.0.0.1 port with a
// temporary data directory, basic authentication, and telemetry and
// Sentry reporting off (both are on by default and would reach public
// hosts). The server stops when the test ends. [StartProcess] does the
// same for a program that is not a test (benchmarks/shipbench), which
// stops the server itself.
//
// # Caveats of ZincSearch
//
// Documents become searchable about a second after they are indexed, so
// the helpers poll ([Server.WaitForIDs]). There is no _count API: counts
// are searches with size 0 and track_total_hits. Request bodies cannot be
// gzip-compressed. Its bulk API answers 200 for every item, even for
// documents Elasticsearch would reject, so error paths are tested against
// a stub that answers as Elasticsearch does, not against ZincSearch.
package zinctest
