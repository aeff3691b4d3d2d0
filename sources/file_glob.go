package sources

import (
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// Globs of the file source: filepath.Match patterns per path segment,
// plus a segment that is exactly ** matching any number of directories
// (none included). A ** walks the directory tree under the part of the
// pattern before it, every glob_interval: keep that part as deep as
// possible. Symbolic links to directories are not followed by **.

const globSep = string(filepath.Separator)

// globAbs checks a glob pattern and makes it absolute.
func globAbs(p string) (string, error) {
	if p == "" {
		return "", filepath.ErrBadPattern
	}
	if _, err := filepath.Match(p, ""); err != nil {
		return "", err
	}
	return filepath.Abs(filepath.FromSlash(p))
}

// globHasMeta reports whether p has glob syntax.
func globHasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// globSplit splits a path or pattern into its segments, collapsing
// repeated ** segments into one.
func globSplit(p string) []string {
	segs := strings.Split(p, globSep)
	out := segs[:0]
	for _, s := range segs {
		if s == "**" && len(out) > 0 && out[len(out)-1] == "**" {
			continue
		}
		out = append(out, s)
	}
	return out
}

// globPattern returns the regular files and links matching an absolute
// pattern (what is not a regular file is sorted out by the caller).
func globPattern(pattern string) []string {
	segs := globSplit(pattern)
	i := slices.Index(segs, "**")
	if i < 0 {
		m, _ := filepath.Glob(pattern)
		return m
	}
	prefix := strings.Join(segs[:i], globSep)
	if prefix == "" {
		prefix = globSep
	}
	rest := segs[i:]
	bases := []string{prefix}
	if globHasMeta(prefix) {
		bases, _ = filepath.Glob(prefix)
	}
	var out []string
	for _, base := range bases {
		filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if d != nil && d.IsDir() && path != base {
					return fs.SkipDir // unreadable: skip, as Glob does
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(base, path)
			if err == nil && globMatch(rest, strings.Split(rel, globSep)) {
				out = append(out, path)
			}
			return nil
		})
	}
	return out
}

// globMatch matches path segments against pattern segments, where
// ** stands for any number of segments.
func globMatch(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for k := 0; k <= len(name); k++ {
				if globMatch(pat[1:], name[k:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := filepath.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// globPaths returns the paths the source's patterns match now, sorted,
// each once, without the excluded ones.
func (s *fileSource) globPaths() []string {
	var out []string
	for _, p := range s.cfg.paths {
		out = append(out, globPattern(p)...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, s.excluded)
}

// excluded reports whether an exclude pattern matches path: one without
// a separator matches the file's name, one with a separator the whole
// path.
func (s *fileSource) excluded(path string) bool {
	for _, e := range s.cfg.exclude {
		if !strings.Contains(e, globSep) {
			if ok, _ := filepath.Match(e, filepath.Base(path)); ok {
				return true
			}
			continue
		}
		if globMatch(globSplit(e), strings.Split(path, globSep)) {
			return true
		}
	}
	return false
}
