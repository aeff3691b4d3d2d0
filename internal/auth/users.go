// Package auth owns who may use the hub: SCRAM credentials (stored salted
// and hashed, never the password), the server side of the SASL PLAIN,
// SCRAM-SHA-256/512 and OAUTHBEARER exchanges (JWTs unsigned, as Kafka's
// unsecured validator, or signed with an HMAC secret or an RSA key), and
// the store behind Kafka's DescribeUserScramCredentials and
// AlterUserScramCredentials (KIP-554).
//
// The credentials live in one file of the data dir, users.json, replaced
// atomically on every change.
package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/weirhub/weir/internal/atomicfile"
)

// Mechanisms of SASL.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Iteration bounds of SCRAM credentials, as Kafka's.
const (
	MinIterations     = 4096
	MaxIterations     = 16384
	DefaultIterations = 8192
)

// FileName is the store's file in the data dir.
const FileName = "users.json"

// Errors of the store.
var (
	ErrUnknownMechanism = errors.New("auth: unknown SCRAM mechanism")
	ErrIterations       = fmt.Errorf("auth: iterations must be from %d to %d", MinIterations, MaxIterations)
	ErrNoCredential     = errors.New("auth: no such credential")
	ErrEmptyName        = errors.New("auth: empty user name")
	ErrEmptyPassword    = errors.New("auth: empty password")
)

// Credential is one user's SCRAM credential for one mechanism (RFC 5802):
// what the server needs to verify a client, from which the password cannot
// be recovered.
type Credential struct {
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// hashFor returns the hash of a SCRAM mechanism.
func hashFor(mech string) (func() hash.Hash, error) {
	switch mech {
	case ScramSHA256:
		return sha256.New, nil
	case ScramSHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("%w %q (want %s or %s)", ErrUnknownMechanism, mech, ScramSHA256, ScramSHA512)
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// SaltPassword is SCRAM's SaltedPassword: PBKDF2 with the mechanism's
// hash.
func SaltPassword(mech, password string, salt []byte, iterations int) ([]byte, error) {
	h, err := hashFor(mech)
	if err != nil {
		return nil, err
	}
	return pbkdf2.Key(h, password, salt, iterations, h().Size())
}

// NewCredential derives the credential from a salted password.
func NewCredential(mech string, salt, saltedPassword []byte, iterations int) (Credential, error) {
	h, err := hashFor(mech)
	if err != nil {
		return Credential{}, err
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return Credential{}, ErrIterations
	}
	clientKey := hmacSum(h, saltedPassword, "Client Key")
	stored := h()
	stored.Write(clientKey)
	return Credential{Iterations: iterations, Salt: slices.Clone(salt), StoredKey: stored.Sum(nil),
		ServerKey: hmacSum(h, saltedPassword, "Server Key")}, nil
}

// Store holds the users' credentials. It is safe for concurrent use.
type Store struct {
	path  string
	mu    sync.RWMutex
	users map[string]map[string]Credential // user → mechanism → credential
}

// Open reads the store of the data dir dir; a missing file is an empty
// store.
func Open(dir string) (*Store, error) {
	s := &Store{path: filepath.Join(dir, FileName), users: map[string]map[string]Credential{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: reading users: %w", err)
	}
	if err := json.Unmarshal(b, &s.users); err != nil {
		return nil, fmt.Errorf("auth: %s: %w", s.path, err)
	}
	if s.users == nil {
		s.users = map[string]map[string]Credential{}
	}
	return s, nil
}

// NewMemory is a store kept in memory only (tests, embedding).
func NewMemory() *Store { return &Store{users: map[string]map[string]Credential{}} }

func (s *Store) save() error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(s.users, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, b); err != nil {
		return fmt.Errorf("auth: saving users: %w", err)
	}
	return os.Chmod(s.path, 0o600)
}

// SetPassword sets user's credential for mech from a password, with a
// fresh random salt.
func (s *Store) SetPassword(user, mech, password string, iterations int) error {
	if password == "" {
		return ErrEmptyPassword
	}
	if iterations == 0 {
		iterations = DefaultIterations
	}
	salt := make([]byte, 24)
	rand.Read(salt)
	salted, err := SaltPassword(mech, password, salt, iterations)
	if err != nil {
		return err
	}
	return s.SetSalted(user, mech, salt, salted, iterations)
}

// SetSalted sets user's credential for mech from a salted password, as
// AlterUserScramCredentials carries it.
func (s *Store) SetSalted(user, mech string, salt, saltedPassword []byte, iterations int) error {
	if user == "" {
		return ErrEmptyName
	}
	c, err := NewCredential(mech, salt, saltedPassword, iterations)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.users[user][mech]
	if s.users[user] == nil {
		s.users[user] = map[string]Credential{}
	}
	s.users[user][mech] = c
	if err := s.save(); err != nil {
		if had {
			s.users[user][mech] = old
		} else {
			delete(s.users[user], mech)
			if len(s.users[user]) == 0 {
				delete(s.users, user)
			}
		}
		return err
	}
	return nil
}

// Delete removes user's credential for mech, or all of them when mech is
// empty.
func (s *Store) Delete(user, mech string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	creds := s.users[user]
	if len(creds) == 0 || mech != "" && !hasKey(creds, mech) {
		return fmt.Errorf("%w: %s %s", ErrNoCredential, user, mech)
	}
	backup := s.users[user]
	if mech == "" {
		delete(s.users, user)
	} else {
		c := maps(creds)
		delete(c, mech)
		if len(c) == 0 {
			delete(s.users, user)
		} else {
			s.users[user] = c
		}
	}
	if err := s.save(); err != nil {
		s.users[user] = backup
		return err
	}
	return nil
}

func hasKey(m map[string]Credential, k string) bool { _, ok := m[k]; return ok }

func maps(m map[string]Credential) map[string]Credential {
	c := make(map[string]Credential, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// UserInfo is what may be shown of a user: names and iterations, no keys.
type UserInfo struct {
	Name       string
	Mechanisms map[string]int // mechanism → iterations
}

// Users lists the users by name.
func (s *Store) Users() []UserInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]UserInfo, 0, len(s.users))
	for name, creds := range s.users {
		u := UserInfo{Name: name, Mechanisms: map[string]int{}}
		for m, c := range creds {
			u.Mechanisms[m] = c.Iterations
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Credential returns user's credential for mech.
func (s *Store) Credential(user, mech string) (Credential, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.users[user][mech]
	return c, ok
}

// CheckPassword reports whether password is user's, against any of the
// user's SCRAM credentials (SASL PLAIN verifies this way, so no password is
// stored for it either).
func (s *Store) CheckPassword(user, password string) bool {
	for _, mech := range []string{ScramSHA512, ScramSHA256} {
		c, ok := s.Credential(user, mech)
		if !ok {
			continue
		}
		salted, err := SaltPassword(mech, password, c.Salt, c.Iterations)
		if err != nil {
			return false
		}
		want, _ := NewCredential(mech, c.Salt, salted, c.Iterations)
		return subtle.ConstantTimeCompare(want.StoredKey, c.StoredKey) == 1
	}
	return false
}
