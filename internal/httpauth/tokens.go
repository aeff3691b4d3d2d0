package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
)

// Scope is a set of things a bearer token may do.
type Scope uint8

// The scopes. A route of the HTTP front door needs one of them; /healthz
// and /readyz need none.
const (
	// ScopeMetrics reads GET /metrics.
	ScopeMetrics Scope = 1 << iota
	// ScopeSubscribe reads records: the dataset subscriptions
	// (GET /v1/datasets/{name}/subscribe) and taps (GET /v1/tap/{target}).
	ScopeSubscribe
	// ScopeProduce writes records: POSTs to the http source.
	ScopeProduce
	// ScopeAdmin changes the running process (POST /-/reload) and is what
	// a route added without a scope needs.
	ScopeAdmin

	// ScopeAll is every scope: "*" in a token file, and a token written
	// without scopes.
	ScopeAll = ScopeMetrics | ScopeSubscribe | ScopeProduce | ScopeAdmin
)

var scopeNames = []struct {
	name  string
	scope Scope
}{{"metrics", ScopeMetrics}, {"subscribe", ScopeSubscribe}, {"produce", ScopeProduce}, {"admin", ScopeAdmin}}

// String names the scopes of s, comma-separated ("*" for all).
func (s Scope) String() string {
	if s == ScopeAll {
		return "*"
	}
	var names []string
	for _, n := range scopeNames {
		if s&n.scope != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// Tokens is a set of bearer tokens, each with its scopes. It keeps only
// the tokens' SHA-256 digests, so that a token is compared in constant
// time whatever its length and never printed. The zero value holds no
// token. It is immutable, safe for concurrent use.
type Tokens struct {
	list []token
}

type token struct {
	sum    [sha256.Size]byte
	scopes Scope
	line   int
}

// ParseTokens reads tokens in the token file format: one token a line,
// optionally followed by white space and its scopes, comma-separated
// (metrics, subscribe, produce, admin, or * for all; no scopes means
// all). A ';' also ends an entry, so that several fit in one environment
// variable. Blank lines and lines starting with '#' are skipped. A token
// is RFC 6750's b64token: letters, digits and -._~+/ with '=' at the end
// only. Errors name the entry's line, never the token.
//
//	# weir serve http tokens
//	s3cr3t-prometheus-9a8f7e   metrics
//	s3cr3t-dashboard-31c4d2    subscribe,metrics
//	s3cr3t-ops-77aa01          *
func ParseTokens(text string) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		for entry := range strings.SplitSeq(line, ";") {
			entry = strings.TrimSpace(entry)
			if entry == "" || strings.HasPrefix(entry, "#") {
				continue
			}
			secret, rest, _ := strings.Cut(strings.ReplaceAll(entry, "\t", " "), " ")
			if !isB64Token(secret) {
				return nil, fmt.Errorf("line %d: the token holds a character a bearer token cannot (RFC 6750: letters, digits, -._~+/ and = at the end)", n)
			}
			scopes, err := parseScopes(strings.TrimSpace(rest))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			sum := sha256.Sum256([]byte(secret))
			if first, dup := seen[sum]; dup {
				return nil, fmt.Errorf("line %d: the same token as line %d", n, first)
			}
			seen[sum] = n
			t.list = append(t.list, token{sum: sum, scopes: scopes, line: n})
		}
	}
	return t, nil
}

func parseScopes(s string) (Scope, error) {
	if s == "" {
		return ScopeAll, nil
	}
	var scopes Scope
	for i, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "*" {
			scopes |= ScopeAll
			continue
		}
		found := false
		for _, n := range scopeNames {
			if strings.EqualFold(name, n.name) {
				scopes |= n.scope
				found = true
			}
		}
		if !found {
			// Not quoted: it may be a token written in the wrong place.
			return 0, fmt.Errorf("scope %d is not one of metrics, subscribe, produce, admin or *", i+1)
		}
	}
	return scopes, nil
}

// isB64Token reports whether s is RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}

// Len is how many tokens t holds.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.list)
}

// Lookup returns the scopes of presented and whether it is one of the
// tokens. It compares the digest of presented with every token's, in
// constant time, so that neither a token's length nor its place in the
// file shows in the time taken.
func (t *Tokens) Lookup(presented string) (Scope, bool) {
	if t == nil {
		return 0, false
	}
	sum := sha256.Sum256([]byte(presented))
	var scopes Scope
	found := 0
	for i := range t.list {
		eq := subtle.ConstantTimeCompare(sum[:], t.list[i].sum[:])
		scopes |= Scope(subtle.ConstantTimeSelect(eq, int(t.list[i].scopes), 0))
		found |= eq
	}
	return scopes, found == 1
}

// merge returns the tokens of t and u; a token in both gets the scopes of
// both.
func (t *Tokens) merge(u *Tokens) *Tokens {
	out := &Tokens{}
	idx := map[[sha256.Size]byte]int{}
	for _, s := range []*Tokens{t, u} {
		if s == nil {
			continue
		}
		for _, tk := range s.list {
			if i, ok := idx[tk.sum]; ok {
				out.list[i].scopes |= tk.scopes
				continue
			}
			idx[tk.sum] = len(out.list)
			out.list = append(out.list, tk)
		}
	}
	return out
}
