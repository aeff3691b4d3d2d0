package sources

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

func TestFileIDPrefix(t *testing.T) {
	for _, tc := range []struct {
		first string
		max   int
		whole bool
		want  string
		fixed bool
	}{
		{"", 1024, false, "", false},
		{"abc", 1024, false, "abc", false},                       // no line break yet
		{"abc\ndef\n", 1024, false, "abc\n", true},               // the first line
		{"abc\r\ndef\n", 1024, false, "abc\r\n", true},           // with its \r
		{"\n\r\n\nabc\ndef", 1024, false, "\n\r\n\nabc\n", true}, // empty lines are not records: up to the first that is
		{"\n\n", 1024, false, "\n\n", false},
		{"abcdefgh", 4, false, "abcd", true},        // a long first line: fingerprint_bytes of it
		{"ab\ncdefgh", 4, false, "ab\n", true},      // the line ends within them
		{"abcdefgh\n", 4, true, "abcdefgh\n", true}, // a .gz file: all its first bytes
	} {
		got, fixed := fileIDPrefix([]byte(tc.first), tc.max, tc.whole)
		if string(got) != tc.want || fixed != tc.fixed {
			t.Errorf("fileIDPrefix(%q, %d, %v) = %q, %v; want %q, %v", tc.first, tc.max, tc.whole, got, fixed, tc.want, tc.fixed)
		}
	}
}

// TestFileIDIdentity: the id follows the file's device, inode, birth
// time and first line, and nothing else.
func TestFileIDIdentity(t *testing.T) {
	id := func(dev, ino uint64, birth int64, first string) string {
		f := &fileState{key: fileKey{Dev: dev, Ino: ino}, btime: birth, fpData: []byte(first)}
		f.setID(1024)
		if !f.idFixed {
			t.Fatalf("setID(%q) not fixed", first)
		}
		return string(f.id[:])
	}
	base := id(1, 2, 3, "first line\n")
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(base) {
		t.Fatalf("id %q is not 16 hex digits", base)
	}
	for _, tc := range []struct {
		name string
		id   string
		same bool
	}{
		{"same file, more content", id(1, 2, 3, "first line\nsecond line\n"), true},
		{"another device", id(9, 2, 3, "first line\n"), false},
		{"another inode", id(1, 9, 3, "first line\n"), false},
		{"the inode reused, birth time known", id(1, 2, 4, "first line\n"), false},
		{"the inode reused, another first line", id(1, 2, 3, "other line\n"), false},
		{"the inode reused, first line longer", id(1, 2, 3, "first line, longer\n"), false},
	} {
		if (tc.id == base) != tc.same {
			t.Errorf("%s: id %s, first file's %s: same = %v, want %v", tc.name, tc.id, base, tc.id == base, tc.same)
		}
	}
	// Not fixed while the first line is incomplete: computed again.
	f := &fileState{key: fileKey{Dev: 1, Ino: 2}, btime: 3, fpData: []byte("first")}
	f.setID(1024)
	if f.idFixed {
		t.Fatal("an id from an incomplete first line was fixed")
	}
	f.fpData = []byte("first line\nmore")
	f.setID(1024)
	if !f.idFixed || string(f.id[:]) != base {
		t.Fatalf("id once the first line is complete = %s (fixed %v), want %s", f.id[:], f.idFixed, base)
	}
}

// fileIDsOf returns the weir.file.id of the records of each value,
// failing if a value had several ids.
func fileIDsOf(t *testing.T, recs []fileRec) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range recs {
		if r.id == "" {
			t.Fatalf("record %q has no weir.file.id", r.value)
		}
		if prev, ok := out[r.value]; ok && prev != r.id {
			t.Fatalf("record %q read twice with ids %s and %s", r.value, prev, r.id)
		}
		out[r.value] = r.id
	}
	return out
}

// TestFileIDRotation: the id of a file's records stays the same while it
// grows, after it is renamed, and when its lines are read again after a
// crash; a new file at its path, and the file truncated and written
// again, get other ids.
func TestFileIDRotation(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	a := filepath.Join(dir, "a.log")
	fileAppend(t, a, "a-") // the first line is not complete yet
	s := openFileSource(t, state, "", filepath.Join(dir, "a.log*"))
	fileExpectNothing(t, s, 50*time.Millisecond)
	fileAppend(t, a, "first\n")
	fileWriteLines(t, a, "a", 0, 3)
	recs := fileReadN(t, s, 4, 5*time.Second)
	ids := fileIDsOf(t, recs)
	idA := ids["a-first"]
	for v, id := range ids {
		if id != idA {
			t.Fatalf("records of one file have ids %s (%q) and %s (a-first)", id, v, idA)
		}
	}
	fileWriteLines(t, a, "a", 3, 5) // grows
	if got := fileIDsOf(t, fileReadN(t, s, 2, 5*time.Second)); got["a-00003"] != idA || got["a-00004"] != idA {
		t.Fatalf("after growing: ids %v, want %s", got, idA)
	}

	// Rotated by rename; the writer appends to the old file once more, then
	// a new file appears at the path.
	if err := os.Rename(a, a+".1"); err != nil {
		t.Fatal(err)
	}
	fileWriteLines(t, a+".1", "a", 5, 6)
	fileWriteLines(t, a, "b", 0, 2)
	got := fileIDsOf(t, fileReadN(t, s, 3, 5*time.Second))
	if got["a-00005"] != idA {
		t.Errorf("renamed file: id %s, want %s as before", got["a-00005"], idA)
	}
	idB := got["b-00000"]
	if idB == idA || got["b-00001"] != idB {
		t.Errorf("new file at the path: ids %s, %s; want one id, not %s", idB, got["b-00001"], idA)
	}
	fileClose(t, s)

	// A crash: lines read and not acknowledged are read again, with the
	// same ids and offsets.
	fileWriteLines(t, a, "b", 2, 4)
	fileWriteLines(t, a+".1", "a", 6, 7)
	s = openFileSource(t, state, "", filepath.Join(dir, "a.log*"))
	first, _ := fileReadBatch(t, s, 5*time.Second) // never acknowledged
	for len(first) < 3 {
		more, _ := fileReadBatch(t, s, 5*time.Second)
		if len(more) == 0 {
			t.Fatalf("read only %v", first)
		}
		first = append(first, more...)
	}
	s.Close(t.Context()) // what a crash leaves: the old checkpoints
	s = openFileSource(t, state, "", filepath.Join(dir, "a.log*"))
	again := fileReadN(t, s, 3, 5*time.Second)
	type origin struct {
		id  string
		off int64
	}
	where := map[string]origin{}
	for _, r := range first {
		where[r.value] = origin{r.id, r.offset}
	}
	for _, r := range again {
		if w, ok := where[r.value]; !ok || w != (origin{r.id, r.offset}) {
			t.Errorf("read again: %q at %s@%d, first at %s@%d", r.value, r.id, r.offset, w.id, w.off)
		}
	}
	if where["a-00006"].id != idA || where["b-00002"].id != idB {
		t.Errorf("after restarting: ids %v, want %s for a-00006 and %s for b-00002", where, idA, idB)
	}

	// copytruncate: the file starts again, so do its offsets: another id.
	if err := os.Truncate(a, 0); err != nil {
		t.Fatal(err)
	}
	fileWriteLines(t, a, "c", 0, 2)
	got = fileIDsOf(t, fileReadN(t, s, 2, 5*time.Second))
	if idC := got["c-00000"]; idC == idB || idC == idA || got["c-00001"] != idC {
		t.Errorf("truncated and written again: ids %v, want a new one (not %s)", got, idB)
	}
	fileClose(t, s)
}
