package pipelines

import (
	"github.com/weirhub/weir/connectors"
)

// JSONSchema returns a JSON Schema (draft 2020-12) of pipeline files with
// the components of reg (default connectors.Default), for editors: the
// same field declarations that decode and check a file.
func JSONSchema(reg *connectors.Registry) map[string]any {
	if reg == nil {
		reg = connectors.Default
	}
	oneComponent := func(kind connectors.Kind, common []connectors.Field) map[string]any {
		var alts []any
		for _, s := range reg.Specs(kind) {
			obj := objectOf(common)
			props := obj["properties"].(map[string]any)
			props[s.Name] = s.JSONSchema()
			req := []any{s.Name}
			for _, f := range common {
				if f.Required {
					req = append(req, f.Name)
				}
			}
			obj["required"] = req
			obj["description"] = s.Summary
			alts = append(alts, obj)
		}
		return map[string]any{"oneOf": alts}
	}
	processors := map[string]any{"type": "array", "items": oneComponent(connectors.ProcessorKind, nil)}
	source := oneComponent(connectors.SourceKind, sourceCommon)
	for _, alt := range source["oneOf"].([]any) {
		alt.(map[string]any)["properties"].(map[string]any)["processors"] = processors
	}
	sink := oneComponent(connectors.SinkKind, sinkCommon)
	pipeline := objectOf(pipelineFields)
	pipeline["properties"].(map[string]any)["processors"] = processors
	pipeline["properties"].(map[string]any)["to"] = map[string]any{"type": "array", "items": sink}
	top := objectOf(topFields)
	props := top["properties"].(map[string]any)
	props["datasets"] = map[string]any{"type": "object", "additionalProperties": objectOf(datasetFields)}
	props["sources"] = map[string]any{"type": "object", "additionalProperties": source}
	props["pipelines"] = map[string]any{"type": "object", "additionalProperties": pipeline}
	props["tests"] = map[string]any{"type": "object", "additionalProperties": objectOf(testFields)}
	top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	top["title"] = "Weir pipeline file"
	return top
}

func objectOf(fields []connectors.Field) map[string]any {
	spec := connectors.Spec{Fields: fields}
	return spec.JSONSchema()
}

// CommonFieldsMarkdown documents the fields every component of kind takes
// besides its own (for sinks: name, batching and retry; for sources: to,
// key, processors and dead_letter), for `weir list` and the docs. It is
// empty for processors.
func CommonFieldsMarkdown(kind connectors.Kind) string {
	var fields []connectors.Field
	var summary string
	switch kind {
	case connectors.SinkKind:
		fields, summary = sinkCommon, "Fields every sink takes next to its type key, like `- file: {...}` then `retry: {attempts: 5}`."
	case connectors.SourceKind:
		fields, summary = sourceCommon, "Fields every source takes next to its type key."
	default:
		return ""
	}
	s := connectors.Spec{Name: "every " + kind.String(), Kind: kind, Summary: summary, Fields: fields}
	return s.Markdown()
}
