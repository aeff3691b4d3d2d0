package log_test

import (
	"fmt"
	"os"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/log"
)

// Example opens a log, appends a record batch, and reads the records
// back from an offset.
func Example() {
	dir, err := os.MkdirTemp("", "weir-log-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	l, err := log.Open(dir, log.Options{SegmentBytes: 1 << 20, Sync: log.SyncAlways})
	if err != nil {
		panic(err)
	}
	defer l.Close()

	var b codecs.Builder
	for _, v := range []string{"first", "second", "third"} {
		b.Append(1764633600000, nil, []byte(v), nil)
	}
	batch, err := b.Build()
	if err != nil {
		panic(err)
	}
	base, err := l.Append(batch) // assigns offsets; durable on return with SyncAlways
	if err != nil {
		panic(err)
	}
	fmt.Println("base offset", base, "high watermark", l.HighWatermark())

	it := l.NewIterator(1)
	for it.Next() {
		r := it.Record()
		fmt.Println(r.Offset, string(r.Value))
	}
	if err := it.Err(); err != nil {
		panic(err)
	}
	// Output:
	// base offset 0 high watermark 3
	// 1 second
	// 2 third
}
