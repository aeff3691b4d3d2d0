package sinks

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// A spool held the records of one open Parquet file that the pipeline
// may already have committed, so that a crash lost none of them: the
// sink of earlier versions wrote one; this one only reads those a crash
// left (the pipeline now commits no record of an unfinished file). It is
// a sequence of frames; the first holds the file's identity as JSON, the
// others one record each, in offset order:
//
//	offset  size  field
//	     0     4  length of what follows the CRC (8 + value), big-endian
//	     4     4  CRC-32C of the offset and the value
//	     8     8  offset of the record (-1 for the header frame), big-endian
//	    16     -  value
//
// A frame cut short or with a bad CRC ends the spool: it was being
// written when the process died, so the write that held it never returned
// and the pipeline will deliver its records again.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type spoolHeader struct {
	Path      string `json:"path"`
	Dataset   string `json:"dataset"`
	Partition int32  `json:"partition"`
}

type spoolRecord struct {
	offset int64
	value  []byte
}

type spoolFile struct {
	path      string
	dataset   string
	partition int32
	records   []spoolRecord
}

var errSpoolEnd = errors.New("end of spool")

// nextSpoolFrame reads one frame; errSpoolEnd at a clean or torn end.
func nextSpoolFrame(r io.Reader, hdr []byte) (int64, []byte, error) {
	if _, err := io.ReadFull(r, hdr[:8]); err != nil {
		return 0, nil, errSpoolEnd
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 8 || n > 1<<30 {
		return 0, nil, errSpoolEnd
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, errSpoolEnd
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:8]) {
		return 0, nil, errSpoolEnd
	}
	return int64(binary.BigEndian.Uint64(body[:8])), body[8:], nil
}

// readSpool reads a spool: its identity and its whole records. A spool
// without a whole header frame (cut at its first write) is empty.
func readSpool(path string) (*spoolFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sinks: parquet: %w", err)
	}
	defer f.Close()
	var hdr [8]byte
	r := io.Reader(f)
	off, h, err := nextSpoolFrame(r, hdr[:])
	if err != nil || off != -1 {
		return &spoolFile{}, nil // nothing in it was ever acknowledged
	}
	var sh spoolHeader
	if err := json.Unmarshal(h, &sh); err != nil {
		return nil, fmt.Errorf("sinks: parquet: spool %s: bad header: %w", path, err)
	}
	sp := &spoolFile{path: sh.Path, dataset: sh.Dataset, partition: sh.Partition}
	last := int64(-1)
	for {
		off, v, err := nextSpoolFrame(r, hdr[:])
		if err != nil {
			break
		}
		if off <= last {
			continue // written again after a failed write was retried
		}
		last = off
		sp.records = append(sp.records, spoolRecord{offset: off, value: v})
	}
	return sp, nil
}
