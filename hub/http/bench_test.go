package http

import (
	"bufio"
	"bytes"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// BenchmarkSSESubscribers produces b.N records of 100 bytes (in batches of
// 100) to a dataset while 0, 1, 8 or 64 Server-Sent Events subscribers
// follow it, and reports the producer's records/s, the events/s delivered
// to all subscribers together, and the p99 delay from produce to a
// subscriber reading the event. make bench-broadcast runs it.
func BenchmarkSSESubscribers(b *testing.B) {
	for _, subs := range []int{0, 1, 8, 64} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) { benchSubscribers(b, subs) })
	}
}

func benchSubscribers(b *testing.B, subs int) {
	h, err := hub.Open(hub.Options{DataDir: b.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ds, err := h.CreateDataset("bench", hub.DatasetConfig{})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := ds.Partition(0)
	mux := nethttp.NewServeMux()
	mux.Handle(SubscribePattern, Subscriptions(h, SubscribeOptions{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	total := b.N
	var (
		mu     sync.Mutex
		delays []time.Duration
		wg     sync.WaitGroup
	)
	ready := make(chan struct{}, subs)
	for range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := nethttp.NewRequest("GET", srv.URL+"/v1/datasets/bench/subscribe?from=latest", nil)
			resp, err := nethttp.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				ready <- struct{}{}
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Scan() // retry:
			ready <- struct{}{}
			var mine []time.Duration
			for n := 0; n < total && sc.Scan(); {
				line := sc.Bytes()
				if !bytes.HasPrefix(line, []byte("data: ")) {
					continue
				}
				n++
				if n%16 == 0 { // sample the delay
					i := bytes.Index(line, []byte(`"value":`))
					j := bytes.IndexByte(line[i+8:], ',')
					if sent, err := strconv.ParseInt(string(bytes.TrimSpace(line[i+8:i+8+j])), 10, 64); err == nil {
						mine = append(mine, time.Since(time.Unix(0, sent)))
					}
				}
			}
			mu.Lock()
			delays = append(delays, mine...)
			mu.Unlock()
		}()
	}
	for range subs {
		<-ready
	}
	pad := bytes.Repeat([]byte(" "), 100) // a JSON number padded to 100 bytes
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var bl codecs.Builder
	for done := 0; done < total; {
		bl.Reset()
		for i := 0; i < 100 && done < total; i++ {
			v := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
			bl.Append(time.Now().UnixMilli(), []byte(strconv.Itoa(done%1000)), append(v, pad[:100-len(v)]...), nil)
			done++
		}
		batch, _ := bl.Build()
		if _, err := p.Produce(bytes.Clone(batch), false); err != nil {
			b.Fatal(err)
		}
	}
	produced := time.Since(start)
	wg.Wait()
	all := time.Since(start)
	b.StopTimer()
	b.SetBytes(100)
	b.ReportMetric(float64(total)/produced.Seconds(), "produced/s")
	if subs > 0 {
		b.ReportMetric(float64(total*subs)/all.Seconds(), "delivered/s")
		slices.Sort(delays)
		if len(delays) > 0 {
			b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")
		}
	}
}
