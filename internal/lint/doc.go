// Package lint holds tests that keep the module's shape: which Weir
// packages may import which. Arrows point down only:
//
//	cmd -> pipelines -> connectors <- sources/sinks -> hub -> log -> codecs
//
// with hub/kafka (the Kafka front door) and hub/kafkaclient (the
// hub.Client over a Kafka cluster) above hub, and internal leaf packages
// (kafkaconf, ackq, atomicfile, auth: users and ACLs) where a rule allows
// them. A cycle, or a
// package that reaches up, is a design bug.
package lint
