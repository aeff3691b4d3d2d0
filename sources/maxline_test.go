package sources

import (
	"testing"

	"github.com/dustin/go-humanize"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

// TestMaxLineLeavesHeadroom: a line cut at the default max_line_bytes,
// with its headers and the batch framing, must still fit a dataset's
// default max.message.bytes; at 1MiB every cut line was dead-lettered
// (issue 18, item 8).
func TestMaxLineLeavesHeadroom(t *testing.T) {
	h, err := hub.Open(hub.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	maxMessage := h.Defaults().MaxMessageBytes
	for _, spec := range []string{"file", "stdin"} {
		var def string
		switch spec {
		case "file":
			def = fieldDefault(t, fileSpec.Fields, "max_line_bytes")
		case "stdin":
			def = fieldDefault(t, stdinSpec.Fields, "max_line_bytes")
		}
		n, err := humanize.ParseBytes(def)
		if err != nil {
			t.Fatal(err)
		}
		if headroom := maxMessage - int(n); headroom < 32<<10 {
			t.Errorf("%s: default max_line_bytes %s leaves %d bytes under max.message.bytes %d, want at least 32KiB", spec, def, headroom, maxMessage)
		}
	}
}

func fieldDefault(t *testing.T, fields []connectors.Field, name string) string {
	t.Helper()
	for _, f := range fields {
		if f.Name == name {
			s, _ := f.Default.(string)
			return s
		}
	}
	t.Fatalf("no field %s", name)
	return ""
}
