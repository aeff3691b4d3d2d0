package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/weirhub/weir/codecs"
)

// TestVerifyDecodesRecords: a batch whose CRC is right but whose records
// are not (0xff bytes, as issue 18 stored) is reported by Verify, with the
// batch's position and offset; the CRC check alone said ok.
func TestVerifyDecodesRecords(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Sync: SyncNever})
	for i := range 3 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 3, 80, 0)); err != nil {
			t.Fatal(err)
		}
	}
	at := l.Stats().Bytes
	bad := make([]byte, codecs.HeaderSize, codecs.HeaderSize+100)
	bad[16] = codecs.Magic
	binary.BigEndian.PutUint32(bad[23:], 4)
	binary.BigEndian.PutUint64(bad[43:], ^uint64(0))
	binary.BigEndian.PutUint32(bad[57:], 5)
	bad = append(bad, bytes.Repeat([]byte{0xff}, 100)...)
	binary.BigEndian.PutUint32(bad[8:], uint32(len(bad)-codecs.LengthPrefix))
	binary.BigEndian.PutUint32(bad[17:], crc32.Checksum(bad[21:], crc32.MakeTable(crc32.Castagnoli)))
	if _, err := l.Append(bad); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, err := Verify(dir, nil)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, codecs.ErrCorrupt) {
		t.Fatalf("Verify = %v, want a *CorruptError", err)
	}
	if ce.Position != at || ce.Offset != 9 {
		t.Fatalf("Verify reports position %d offset %d, want %d and 9", ce.Position, ce.Offset, at)
	}
}
