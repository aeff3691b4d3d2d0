package pipelines

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary files to the loader and the checker: they must
// never panic, and a rejected file must come back as Errors with places.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/lint/*.yaml")
	examples, _ := filepath.Glob("../examples/*.yaml")
	files = append(files, examples...)
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("pipelines: {p: {from: a, to: [{memory: {id: x}}], processors: [{filter: 'a ==' }]}}\ndatasets: {a: {}}"))
	testRegistry(f)
	env := func(k string) (string, bool) { return "v", k == "SET" }
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Load("fuzz.yaml", src, LoadOptions{Env: env})
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Load failed without Errors: %T %v", err, err)
			}
			return
		}
		if err := Check(cfg, nil); err != nil {
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Check failed without Errors: %T %v", err, err)
			}
		}
	})
}
