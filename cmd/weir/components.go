package main

// The connectors, registered by name when linked in.
import (
	_ "github.com/weirhub/weir/sinks"
	_ "github.com/weirhub/weir/sources"
)
