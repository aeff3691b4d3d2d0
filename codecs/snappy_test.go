package codecs

import "github.com/klauspost/compress/s2"

func iotestSnappyBlock(in []byte) ([]byte, error) { return s2.EncodeSnappy(nil, in), nil }
