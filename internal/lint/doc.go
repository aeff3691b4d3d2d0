// Package lint holds tests that keep the module's shape: which Weir
// packages may import which, following the arrows of DESIGN.md
// (cmd -> pipelines -> connectors <- sources/sinks -> hub -> log -> codecs).
package lint
