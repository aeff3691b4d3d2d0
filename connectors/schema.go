package connectors

import (
	"fmt"
	"sort"
	"strings"
)

// JSONSchema returns the JSON Schema (draft 2020-12) of a component's
// config, as a value ready for encoding/json.
func (s *Spec) JSONSchema() map[string]any {
	obj := objectSchema(s.Fields)
	obj["description"] = s.Summary
	if s.Scalar != "" {
		f := findField(s.Fields, s.Scalar)
		if f != nil {
			return map[string]any{"description": s.Summary, "anyOf": []any{obj, fieldSchema(f)}}
		}
	}
	return obj
}

func objectSchema(fields []Field) map[string]any {
	props := map[string]any{}
	var required []string
	for i := range fields {
		f := &fields[i]
		props[f.Name] = fieldSchema(f)
		if f.Required {
			required = append(required, f.Name)
		}
	}
	obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		sort.Strings(required)
		obj["required"] = required
	}
	return obj
}

func fieldSchema(f *Field) map[string]any {
	var s map[string]any
	switch f.Type {
	case TypeString, TypeExpr:
		s = map[string]any{"type": "string"}
	case TypeInt:
		s = map[string]any{"type": "integer"}
	case TypeFloat:
		s = map[string]any{"type": "number"}
	case TypeBool:
		s = map[string]any{"type": "boolean"}
	case TypeDuration:
		s = map[string]any{"type": "string", "pattern": `^(forever|-1|[0-9.]+d|([0-9.]+(ns|us|µs|ms|s|m|h))+)$`}
	case TypeSize:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "integer", "minimum": 0},
			map[string]any{"type": "string", "pattern": `^[0-9.]+\s*([kKmMgGtTpPeE]i?[bB]?|[bB])?$`}}}
	case TypeStrings:
		s = map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}}
	case TypeStringMap:
		s = map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
	case TypeObject:
		s = objectSchema(f.Fields)
	case TypeObjects:
		s = map[string]any{"type": "array", "items": objectSchema(f.Fields)}
	default:
		s = map[string]any{}
	}
	if f.Doc != "" {
		s["description"] = f.Doc
	}
	if f.Default != nil {
		s["default"] = f.Default
	}
	if len(f.Enum) > 0 {
		s["enum"] = f.Enum
	}
	addBounds(f, s)
	return s
}

// addBounds puts the field's Min and Max into its schema: as minimum and
// maximum of a number, of the integer form of a size, and in words in the
// description (a size or duration string cannot carry them).
func addBounds(f *Field, s map[string]any) {
	if f.Min == nil && f.Max == nil {
		return
	}
	num := s
	if f.Type == TypeSize {
		num = s["anyOf"].([]any)[0].(map[string]any)
	}
	if f.Type == TypeInt || f.Type == TypeFloat || f.Type == TypeSize {
		if lo, ok := f.bound(f.Min); ok {
			num["minimum"] = lo
		}
		if hi, ok := f.bound(f.Max); ok {
			num["maximum"] = hi
		}
	}
	d, _ := s["description"].(string)
	s["description"] = strings.TrimSpace(d + " " + capitalize(f.BoundsText()) + ".")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Markdown renders a component's documentation: summary, fields with
// types and defaults, and the example.
func (s *Spec) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### `%s` (%s)\n\n%s\n\n", s.Name, s.Kind, s.Summary)
	if s.Doc != "" {
		fmt.Fprintf(&b, "%s\n\n", s.Doc)
	}
	if len(s.Fields) > 0 {
		b.WriteString("| field | type | default | description |\n|---|---|---|---|\n")
		writeFieldRows(&b, "", s.Fields)
		b.WriteString("\n")
	}
	if s.Example != "" {
		fmt.Fprintf(&b, "```yaml\n%s\n```\n\n", strings.TrimSpace(s.Example))
	}
	return b.String()
}

// FieldsMarkdown renders fields as the Markdown table of Spec.Markdown:
// name, type, default and description with enums and bounds, nested
// fields under their parent's name. Pipeline files document their own
// sections with it.
func FieldsMarkdown(fields []Field) string {
	var b strings.Builder
	b.WriteString("| field | type | default | description |\n|---|---|---|---|\n")
	writeFieldRows(&b, "", fields)
	return b.String()
}

func writeFieldRows(b *strings.Builder, prefix string, fields []Field) {
	for _, f := range fields {
		def := ""
		if f.Required {
			def = "required"
		} else if f.Default != nil {
			def = fmt.Sprintf("`%v`", f.Default)
		}
		doc := f.Doc
		if len(f.Enum) > 0 {
			doc += " One of: " + strings.Join(f.Enum, ", ") + "."
		}
		if b := f.BoundsText(); b != "" {
			doc = strings.TrimSpace(doc + " " + capitalize(b) + ".")
		}
		fmt.Fprintf(b, "| `%s%s` | %s | %s | %s |\n", prefix, f.Name, f.Type, def, strings.ReplaceAll(doc, "|", "\\|"))
		if f.Type == TypeObject || f.Type == TypeObjects {
			sub := prefix + f.Name + "."
			if f.Type == TypeObjects {
				sub = prefix + f.Name + "[]."
			}
			writeFieldRows(b, sub, f.Fields)
		}
	}
}
