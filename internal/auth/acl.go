package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/internal/atomicfile"
)

// ACLFileName is the ACL store's file in the data dir.
const ACLFileName = "acls.json"

// ACL is one access control entry in Kafka's model: Principal (User:name
// or User:*) on Host (* for any) may (Allow) or may not (Deny) perform
// Operation on resources of ResourceType named ResourceName, literally
// (* for all) or as a prefix.
type ACL struct {
	Principal    string                      `json:"principal"`
	Host         string                      `json:"host"`
	ResourceType kmsg.ACLResourceType        `json:"resource_type"`
	ResourceName string                      `json:"resource_name"`
	PatternType  kmsg.ACLResourcePatternType `json:"pattern_type"`
	Operation    kmsg.ACLOperation           `json:"operation"`
	Permission   kmsg.ACLPermissionType      `json:"permission"`
}

// String is the ACL as `weir acls list` shows it.
func (a ACL) String() string {
	return fmt.Sprintf("%s %s %s %s:%s:%s from %s", a.Principal, a.Permission, a.Operation, a.ResourceType,
		strings.ToLower(a.PatternType.String()), a.ResourceName, a.Host)
}

// Validate checks an ACL to be stored: concrete values only, no ANY or
// MATCH.
func (a ACL) Validate() error {
	switch {
	case !strings.Contains(a.Principal, ":") || strings.HasSuffix(a.Principal, ":"):
		return fmt.Errorf("auth: principal %q: want User:name or User:*", a.Principal)
	case a.Host == "":
		return errors.New("auth: empty host (use * for any)")
	case a.ResourceName == "":
		return errors.New("auth: empty resource name")
	}
	switch a.ResourceType {
	case kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster, kmsg.ACLResourceTypeTransactionalId:
	default:
		return fmt.Errorf("auth: resource type %s cannot be stored (want TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID)", a.ResourceType)
	}
	switch a.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed:
	default:
		return fmt.Errorf("auth: pattern type %s cannot be stored (want LITERAL or PREFIXED)", a.PatternType)
	}
	if a.Operation < kmsg.ACLOperationAll || a.Operation > kmsg.ACLOperationIdempotentWrite {
		return fmt.Errorf("auth: operation %s cannot be stored", a.Operation)
	}
	if a.Permission != kmsg.ACLPermissionTypeAllow && a.Permission != kmsg.ACLPermissionTypeDeny {
		return fmt.Errorf("auth: permission %s cannot be stored (want ALLOW or DENY)", a.Permission)
	}
	return nil
}

// Filter selects ACLs, as DescribeAcls and DeleteAcls carry it: ANY
// types, null names, principals and hosts match everything; pattern type
// MATCH matches the literal and prefixed ACLs that apply to the name.
type Filter struct {
	ResourceType kmsg.ACLResourceType
	ResourceName *string
	PatternType  kmsg.ACLResourcePatternType
	Principal    *string
	Host         *string
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

// Matches reports whether f selects a.
func (f Filter) Matches(a ACL) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != a.ResourceType ||
		f.Principal != nil && *f.Principal != a.Principal ||
		f.Host != nil && *f.Host != a.Host ||
		f.Operation != kmsg.ACLOperationAny && f.Operation != a.Operation ||
		f.Permission != kmsg.ACLPermissionTypeAny && f.Permission != a.Permission {
		return false
	}
	switch f.PatternType {
	case kmsg.ACLResourcePatternTypeAny:
		return f.ResourceName == nil || *f.ResourceName == a.ResourceName
	case kmsg.ACLResourcePatternTypeMatch:
		return f.ResourceName == nil || resourceMatches(a, *f.ResourceName)
	}
	return f.PatternType == a.PatternType && (f.ResourceName == nil || *f.ResourceName == a.ResourceName)
}

func resourceMatches(a ACL, name string) bool {
	if a.PatternType == kmsg.ACLResourcePatternTypePrefixed {
		return strings.HasPrefix(name, a.ResourceName)
	}
	return a.ResourceName == "*" || a.ResourceName == name
}

// ACLs is the durable ACL store. It is safe for concurrent use.
type ACLs struct {
	path string
	mu   sync.RWMutex
	list []ACL
}

// OpenACLs reads the ACLs of the data dir dir; a missing file holds
// none.
func OpenACLs(dir string) (*ACLs, error) {
	s := &ACLs{path: filepath.Join(dir, ACLFileName)}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: reading ACLs: %w", err)
	}
	if err := json.Unmarshal(b, &s.list); err != nil {
		return nil, fmt.Errorf("auth: %s: %w", s.path, err)
	}
	return s, nil
}

func (s *ACLs) save(list []ACL) error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, b); err != nil {
		return fmt.Errorf("auth: saving ACLs: %w", err)
	}
	return nil
}

// Add stores acls (ones already stored are kept once).
func (s *ACLs) Add(acls ...ACL) error {
	for _, a := range acls {
		if err := a.Validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := slices.Clone(s.list)
	for _, a := range acls {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	if err := s.save(list); err != nil {
		return err
	}
	s.list = list
	return nil
}

// Delete removes the ACLs f matches and returns them.
func (s *ACLs) Delete(f Filter) ([]ACL, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept, gone []ACL
	for _, a := range s.list {
		if f.Matches(a) {
			gone = append(gone, a)
		} else {
			kept = append(kept, a)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	if err := s.save(kept); err != nil {
		return nil, err
	}
	s.list = kept
	return gone, nil
}

// Describe returns the ACLs f matches.
func (s *ACLs) Describe(f Filter) []ACL {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []ACL
	for _, a := range s.list {
		if f.Matches(a) {
			out = append(out, a)
		}
	}
	return out
}

// implies lists the operations each operation grants besides itself, as
// Kafka's authorizer does: Read, Write, Delete and Alter imply Describe;
// AlterConfigs implies DescribeConfigs.
func implies(granted, op kmsg.ACLOperation) bool {
	if granted == op || granted == kmsg.ACLOperationAll {
		return true
	}
	switch op {
	case kmsg.ACLOperationDescribe:
		return granted == kmsg.ACLOperationRead || granted == kmsg.ACLOperationWrite ||
			granted == kmsg.ACLOperationDelete || granted == kmsg.ACLOperationAlter
	case kmsg.ACLOperationDescribeConfigs:
		return granted == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// Authorize decides whether principal, connecting from host, may perform
// op on the resource: a matching Deny wins over any Allow; without a
// matching Allow it is refused. found reports whether any ACL exists for
// the resource at all (for allow.everyone.if.no.acl.found).
func (s *ACLs) Authorize(principal, host string, rt kmsg.ACLResourceType, name string, op kmsg.ACLOperation) (allowed, found bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.list {
		if a.ResourceType != rt || !resourceMatches(a, name) {
			continue
		}
		found = true
		if a.Principal != principal && a.Principal != "User:*" || a.Host != "*" && a.Host != host {
			continue
		}
		if a.Permission == kmsg.ACLPermissionTypeDeny {
			// A deny of Describe does not deny Read: only the same
			// operation or ALL denies.
			if a.Operation == op || a.Operation == kmsg.ACLOperationAll {
				return false, true
			}
			continue
		}
		if implies(a.Operation, op) {
			allowed = true
		}
	}
	return allowed, found
}
