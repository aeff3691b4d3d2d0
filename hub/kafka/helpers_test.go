package kafka

import "github.com/weirhub/weir/codecs"

func newBatch() *codecs.Builder { return &codecs.Builder{} }
