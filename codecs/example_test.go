package codecs_test

import (
	"fmt"

	"github.com/weirhub/weir/codecs"
)

// Example builds a compressed RecordBatch v2 and reads its records back.
func Example() {
	b := codecs.Builder{Compression: codecs.LZ4}
	b.Append(1764633600000, []byte("user-1"), []byte(`{"action":"login"}`),
		[]codecs.RecordHeader{{Key: []byte("source"), Value: []byte("web")}})
	b.Append(1764633600250, nil, []byte(`{"action":"logout"}`), nil)
	batch, err := b.Build()
	if err != nil {
		panic(err)
	}

	var it codecs.RecordIter
	if err := it.Reset(batch); err != nil {
		panic(err)
	}
	h := it.Header()
	fmt.Println(h.NumRecords, "records,", h.Compression(), "compressed")
	for it.Next() {
		r := it.Record()
		fmt.Printf("%d key=%q value=%s headers=%d ts=%d\n", r.Offset, r.Key, r.Value, len(r.Headers), r.Timestamp)
	}
	if err := it.Err(); err != nil {
		panic(err)
	}
	// Output:
	// 2 records, lz4 compressed
	// 0 key="user-1" value={"action":"login"} headers=1 ts=1764633600000
	// 1 key="" value={"action":"logout"} headers=0 ts=1764633600250
}
