package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/weirhub/weir/connectors"
	// The connectors, registered by name when linked in.
	_ "github.com/weirhub/weir/sinks"
	_ "github.com/weirhub/weir/sources"
)

// knownComponent checks that name is a component of kind, for `weir list
// KIND NAME`: an unknown name is an error listing the known ones (with the
// closest as a suggestion).
func knownComponent(kind connectors.Kind, name string) error {
	var names []string
	for _, s := range connectors.Default.Specs(kind) {
		if s.Name == "memory" {
			continue // test components
		}
		if s.Name == name {
			return nil
		}
		names = append(names, s.Name)
	}
	slices.Sort(names)
	msg := fmt.Sprintf("no %s named %q", kind, name)
	if s := connectors.Suggest(name, slices.Values(names)); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return fmt.Errorf("%s; the %ss are: %s", msg, kind, strings.Join(names, ", "))
}
