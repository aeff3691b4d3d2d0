package sinks

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
)

// The writer of the spool format, which the sink no longer writes: tests
// make with it the spools an earlier version left.

func appendSpoolFrame(dst []byte, offset int64, value []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(8+len(value)))
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(offset))
	dst = append(dst, value...)
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], crcTable))
	return dst
}

func appendSpoolRecord(dst []byte, offset int64, value []byte) []byte {
	return appendSpoolFrame(dst, offset, value)
}

func appendSpoolHeader(dst []byte, path, dataset string, partition int32) []byte {
	h, _ := json.Marshal(spoolHeader{Path: path, Dataset: dataset, Partition: partition})
	return appendSpoolFrame(dst, -1, h)
}
