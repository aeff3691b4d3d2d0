// Command floorbroker is the floor of the hub benchmark's latency knee: the
// cheapest server that speaks enough of the Kafka protocol for hubbench's
// franz-go clients, so that a knee measured against it on a machine is
// what any broker could reach there with those clients. Run it beside
// weir serve and hand its address to hubbench -floor-brokers:
//
//	go build -o /tmp/floorbroker ./floorbroker
//	/tmp/floorbroker -listen 127.0.0.1:9093 &
//	go run ./hubbench -brokers 127.0.0.1:9092 -floor-brokers 127.0.0.1:9093 -floor-pid $!
//
// # What it does
//
// One broker (node 0) leading every partition, records in memory only:
//
//   - Produce (v3 to v11, acks 1 or all; both mean "stored in memory"
//     here, as there is no replica): the request's one record batch is
//     copied into the partition's memory with its base offset (and leader
//     epoch 0) written in place, as a broker assigns them; no CRC check, no
//     decompression, no disk. An idempotent producer's sequence numbers are
//     checked as Kafka does (a duplicate of one of its last five batches is
//     answered with that batch's offset, a gap with
//     OUT_OF_ORDER_SEQUENCE_NUMBER). The answer is written after the batch
//     is in memory.
//   - Fetch (v4 to v12, no fetch sessions: every answer has session id 0,
//     as weir's): the batches from the one holding the fetch offset, up to
//     the partition's and the request's byte limits (at least one batch).
//     With fewer than fetch.min.bytes ready, it waits up to fetch.max.wait
//     and wakes as soon as a produce reaches one of the fetched partitions.
//   - Metadata, ApiVersions, InitProducerID (no transactions), ListOffsets
//     (earliest, latest, by timestamp), CreateTopics and DeleteTopics.
//
// Memory is bounded: each partition keeps its newest -retain bytes (1
// GiB) in chunks of 8 MiB; a fetch below what is kept gets
// OFFSET_OUT_OF_RANGE. -retain must exceed hubbench's -size (payload plus
// some 10% of batch and record headers): its consume run reads the whole
// produce run back from offset 0, and a franz-go consumer told
// OFFSET_OUT_OF_RANGE resets to the start kept and waits forever for the
// records dropped. Requests of APIs it does not advertise close the
// connection, as Kafka does.
//
// Each connection has one goroutine that reads a request, answers it and
// writes the answer, in order; answers to pipelined requests go out in
// one write when no further request is buffered.
//
// # What it showed (2026-12-03, the 2-core machine of issue 9)
//
// Six runs of weir serve and the floor in one hubbench run each (-skip-nats
// -skip-redis -size 256MiB -produce-runs 4 -latency-duration 0 -knee-start
// 150000 -knee-factor 1.2 -knee-repeat 3 -knee-beyond 2), each started on a
// quiet machine (other CPUs 0.00 in nearly every knee step): the floor's
// knee was 271k to 311k records/s (284k in four), 33 to 43% of weir's
// maximum produce rate in the same run (663k to 861k); weir's was 164k to
// 197k in four runs, 0 (its 150k step failed) in one and 311k in one (a
// ladder that failed at 216k and passed at 311k). The floor's own maximum
// was 0.9 to 1.3M records/s. At its knee the client took 0.75 to 0.85
// CPUs, the floor 0.35 to 0.4 (weir 0.5 to 0.55 at the same rates), and
// something waited for a CPU 40 to 45% of the time. With the servers on
// CPU 1 and the client on CPU 0 (taskset) both knees fell (floor 111k,
// weir 89k): the client needs more than one CPU. So with these clients on
// this machine a knee of 40% of weir's maximum is about the most any
// broker gets: the floor reached it in the three runs where weir's maximum
// was 750k or less (41 to 43%), not in the three where it was more (33 to
// 37%).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/dustin/go-humanize"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9093", "address to listen on, host:port")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the broker to this file, from start to SIGTERM or interrupt")
	retain := flag.String("retain", "1GiB", "bytes of records each partition keeps in memory; older ones are dropped (more than hubbench -size)")
	flag.Parse()
	keep, err := humanize.ParseBytes(*retain)
	if err != nil || keep < chunkSize {
		fmt.Fprintf(os.Stderr, "floorbroker: -retain %q: want a size of at least %s\n", *retain, humanize.IBytes(chunkSize))
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "floorbroker: %v\n", err)
		os.Exit(1)
	}
	b, err := newBroker(ln, int64(keep))
	if err != nil {
		fmt.Fprintf(os.Stderr, "floorbroker: %v\n", err)
		os.Exit(1)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "floorbroker: -cpuprofile: %v\n", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; b.close() }()
	fmt.Printf("floorbroker listening on %s, keeping %s per partition\n", ln.Addr(), humanize.IBytes(keep))
	b.serve()
}
