package pipelines

import "errors"

// Placeholders until codecs' logfmt and key=value parsers land.
type kvOptions struct {
	FieldSep, ValueSep byte
	TrimQuotes         bool
}

func appendLogfmtJSON(dst, line []byte) ([]byte, error) {
	return dst, errors.New("logfmt parser not available yet")
}

func appendKVJSON(dst, line []byte, _ kvOptions) ([]byte, error) {
	return dst, errors.New("kv parser not available yet")
}
