package hub

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMurmur2KafkaVectors(t *testing.T) {
	// The vectors of Kafka's UtilsTest.testMurmur2.
	tests := []struct {
		in   []byte
		want int32
	}{
		{[]byte("21"), -973932308},
		{[]byte("foobar"), -790332482},
		{[]byte("a-little-bit-long-string"), -985981536},
		{[]byte("a-little-bit-longer-string"), -1486304829},
		{[]byte("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971},
		{[]byte{'a', 'b', 'c'}, 479470107},
	}
	for _, tt := range tests {
		if got := Murmur2(tt.in); got != tt.want {
			t.Errorf("Murmur2(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestPartitionForKeyMatchesFranzGo checks keyed partitioning against
// franz-go's Kafka-compatible partitioner.
func TestPartitionForKeyMatchesFranzGo(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for i := range 1000 {
		key := []byte(fmt.Sprintf("key-%d-%x", i, i*7919))
		for _, n := range []int32{1, 3, 16, 100} {
			want := int32(p.Partition(&kgo.Record{Key: key}, int(n)))
			if got := PartitionForKey(key, n); got != want {
				t.Fatalf("PartitionForKey(%q, %d) = %d, franz-go says %d", key, n, got, want)
			}
		}
	}
}
