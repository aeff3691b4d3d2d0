package httpauth

import (
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	text := "# tokens\n\nprom-0123456789 metrics\n  dash-abcdef   subscribe, metrics \nops-xyz= *\nall-of-them\nwriter produce;reader subscribe\n"
	tk, err := ParseTokens(text)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Len() != 6 {
		t.Fatalf("Len() = %d, want 6", tk.Len())
	}
	for _, c := range []struct {
		token string
		want  Scope
		ok    bool
	}{
		{"prom-0123456789", ScopeMetrics, true},
		{"dash-abcdef", ScopeSubscribe | ScopeMetrics, true},
		{"ops-xyz=", ScopeAll, true},
		{"all-of-them", ScopeAll, true},
		{"writer", ScopeProduce, true},
		{"reader", ScopeSubscribe, true},
		{"prom-012345678", 0, false},
		{"prom-0123456789 ", 0, false},
		{"", 0, false},
		{"# tokens", 0, false},
	} {
		got, ok := tk.Lookup(c.token)
		if got != c.want || ok != c.ok {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", c.token, got, ok, c.want, c.ok)
		}
	}
}

func TestParseTokensErrors(t *testing.T) {
	for _, c := range []struct{ text, want, secret string }{
		{"good metrics\nbad\"token metrics", "line 2: the token holds a character", "bad\"token"},
		{"tok-1 metric", "line 1: scope 1 is not one of", "tok-1"},
		{"tok-1 tok-2-written-here", "line 1: scope 1 is not one of", "tok-2-written-here"},
		{"tok-1\n\ntok-1 admin", "line 3: the same token as line 1", "tok-1"},
		{"=abc", "line 1: the token holds", "=abc"},
		{"a=b", "line 1: the token holds", "a=b"},
		{"tok-2 metrics,,admin", "line 1: scope 2 is not one of", "tok-2"},
	} {
		_, err := ParseTokens(c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTokens(%q) = %v, want %q", c.text, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), c.secret) {
			t.Errorf("ParseTokens(%q): the error %q shows the token", c.text, err)
		}
	}
}

func TestScopeString(t *testing.T) {
	for _, c := range []struct {
		s    Scope
		want string
	}{{ScopeAll, "*"}, {ScopeMetrics, "metrics"}, {ScopeSubscribe | ScopeProduce, "subscribe,produce"}, {0, ""}} {
		if got := c.s.String(); got != c.want {
			t.Errorf("Scope(%d).String() = %q, want %q", c.s, got, c.want)
		}
		if c.s != 0 {
			back, err := parseScopes(c.s.String())
			if err != nil || back != c.s {
				t.Errorf("parseScopes(%q) = %v, %v; want %v", c.s.String(), back, err, c.s)
			}
		}
	}
}

// FuzzParseTokens checks that the parser never panics, that every entry
// of a text it accepts is found by Lookup with the scopes parsed alone,
// and that an error never quotes an entry's token.
func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{"", "tok", "tok metrics", "a b", "a\tsubscribe,produce\nb *", "# c\n;;x admin;y", "t= metrics", "x ,", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tk, err := ParseTokens(text)
		var entries []string
		for line := range strings.SplitSeq(text, "\n") {
			for e := range strings.SplitSeq(line, ";") {
				if e = strings.TrimSpace(e); e != "" && !strings.HasPrefix(e, "#") {
					entries = append(entries, e)
				}
			}
		}
		if err != nil {
			for _, e := range entries {
				for _, word := range strings.FieldsFunc(e, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }) {
					if len(word) >= 12 && strings.Contains(err.Error(), word) {
						t.Fatalf("error %q shows %q of the entry", err, word)
					}
				}
			}
			return
		}
		if tk.Len() != len(entries) {
			t.Fatalf("Len() = %d for %d entries", tk.Len(), len(entries))
		}
		for _, e := range entries {
			secret, rest, _ := strings.Cut(strings.ReplaceAll(e, "\t", " "), " ")
			want, err := parseScopes(strings.TrimSpace(rest))
			if err != nil {
				t.Fatalf("entry %q accepted, its scopes refused alone: %v", e, err)
			}
			got, ok := tk.Lookup(secret)
			if !ok || got != want || got&^ScopeAll != 0 {
				t.Fatalf("Lookup(%q) = %v, %v; want %v", secret, got, ok, want)
			}
		}
	})
}
