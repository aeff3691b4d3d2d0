package connectors

import "github.com/valyala/fastjson"

type fastjsonParser = fastjson.Parser

// copyInto rebuilds a parsed scalar in the message's arena.
func copyInto(m *Message, v *fastjson.Value) *fastjson.Value {
	a := m.Arena()
	if a == nil {
		m.Fields()
		a = m.Arena()
	}
	switch v.Type() {
	case fastjson.TypeString:
		return a.NewStringBytes(v.GetStringBytes())
	case fastjson.TypeTrue:
		return a.NewTrue()
	case fastjson.TypeFalse:
		return a.NewFalse()
	}
	return a.NewNumberFloat64(v.GetFloat64())
}
