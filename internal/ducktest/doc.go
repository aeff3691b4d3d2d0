// Package ducktest reads files with DuckDB in tests: an independent
// reader for what Weir writes (Parquet above all). DuckDB comes from the
// npm package @duckdb/node-api, which carries the engine, so nothing but
// node and npm is needed on the machine.
//
// [Install] installs the package once per machine under the user cache
// directory ($XDG_CACHE_HOME, else ~/.cache), in weir-test/duckdb/, with
// npm; a lock file there keeps parallel test processes from installing
// twice. scripts/test-deps.sh runs the same install. [Query] runs one SQL
// statement in a fresh in-memory database through a small node script and
// returns the column names, types and rows (as DuckDB's JSON rendering:
// BIGINT and HUGEINT come as strings, timestamps as text). A missing node
// or a failed install fails the test with what to do; it never skips.
package ducktest
