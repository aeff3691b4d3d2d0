// Package benchmarks holds Weir's reproducible benchmarks against peers:
// programs that measure Weir and a reference on the same machine in the
// same run and print the ratio, because the machines are shared and noisy
// and only ratios travel. Nothing in the product imports it.
//
//   - logbench (make bench): the commit log against dd writing the same
//     bytes with conv=fdatasync, the disk's sequential ceiling; with
//     -syncs, what one fdatasync costs against the bytes it carries and
//     whether it changes the file's size or extents.
//   - hubbench (make bench-hub): the hub over loopback with franz-go
//     against NATS JetStream and Redis Streams: produce, fetch and
//     produce-to-consume latency.
//   - partbench (make bench-partitions): what partitions cost in weir
//     serve: create time, idle RSS, open files and disk for 1,000 and
//     10,000 partitions, restart time, and produce throughput over 1,000
//     partitions against one.
//   - pipelinebench (make bench-pipeline): pipelines against a plain Go
//     encoding/json program doing the same job on the same seeded log:
//     MB per CPU-second, peak RSS (and the process's own memory without
//     its binary's pages) and the hub's disk per GB of input, also over a
//     large backlog; COMPRESSION=none (-compression) measures the datasets
//     without their default lz4.
//   - shipbench (make bench-ship): the log-shipping agent. Tailed JSON
//     lines through the hub to the elasticsearch sink against a bare
//     esutil.BulkIndexer loop sending the same lines to the same server
//     (a stub, then a real ZincSearch), and to the zstd file sink against
//     a plain Go line copy and cat | zstd: throughput, CPU-seconds, RSS.
package benchmarks
