package codecs

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchValue is a 1 KiB log-like value: compressible, but not trivially.
func benchValue(rng *rand.Rand) []byte {
	words := []string{"GET", "POST", "/api/v1/items", "/login", "200", "404", "503", "curl/8.1", "Mozilla/5.0", "eu-west-1", "user=", "latency_ms=", "trace=", "ok", "error"}
	v := make([]byte, 0, 1024)
	for len(v) < 1024 {
		v = append(v, words[rng.IntN(len(words))]...)
		v = append(v, ' ')
		v = fmt.Appendf(v, "%x ", rng.Uint32())
	}
	return v[:1024]
}

func BenchmarkBuild(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	value := benchValue(rng)
	for _, c := range allCodecs {
		for _, n := range []int{16, 256} {
			b.Run(fmt.Sprintf("%v/records=%d", c, n), func(b *testing.B) {
				var bl Builder
				bl.Compression = c
				b.SetBytes(int64(n * len(value)))
				b.ReportAllocs()
				for b.Loop() {
					bl.Reset()
					for i := range n {
						bl.Append(int64(i), nil, value, nil)
					}
					if _, err := bl.Build(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

func BenchmarkRecordIter(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range allCodecs {
		b.Run(c.String(), func(b *testing.B) {
			var bl Builder
			bl.Compression = c
			const n = 256
			for i := range n {
				bl.Append(int64(i), []byte("key"), benchValue(rng), []RecordHeader{{Key: []byte("h"), Value: []byte("v")}})
			}
			batch, err := bl.Build()
			if err != nil {
				b.Fatal(err)
			}
			var it RecordIter
			b.SetBytes(int64(n * 1024))
			b.ReportAllocs()
			for b.Loop() {
				if err := it.Reset(batch); err != nil {
					b.Fatal(err)
				}
				for it.Next() {
				}
				if it.Err() != nil {
					b.Fatal(it.Err())
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func BenchmarkValidate(b *testing.B) {
	var bl Builder
	value := benchValue(rand.New(rand.NewPCG(1, 2)))
	for i := range 256 {
		bl.Append(int64(i), nil, value, nil)
	}
	batch, _ := bl.Build()
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(batch, 0); err != nil {
			b.Fatal(err)
		}
	}
}
