// Package codecs owns Weir's byte formats: the Kafka RecordBatch v2 layout
// that is used unchanged on the wire, on disk and in memory, the varints it is
// built from, and the compression codecs a batch may carry; and the payload
// formats that records arrive in from the outside: syslog (RFC 5424 and
// RFC 3164, with RFC 6587 framing for streams), logfmt and key=value lines,
// each rendered as a JSON object appended to a caller's buffer without an
// allocation per message.
//
// It also turns JSON objects into Arrow record batches (ArrowBuilder, with
// github.com/apache/arrow-go/v18) for the parquet sink: columns inferred or
// declared, widened safely (int64 to float64, timestamp to string, new
// fields), one pass per record and no allocation per field: a record that
// fits the schema is checked and converted in one scan of its bytes and
// appended once it fits whole; one that needs more (a wider schema, an
// error with its column and reason) is parsed with fastjson and decided
// there.
//
// The package does no I/O beyond io.Reader and io.Writer and imports no other
// Weir package.
//
// # RecordBatch v2
//
// A batch is a 61-byte header followed by its records, compressed as a whole
// when the codec bits of the attributes say so:
//
//	offset  size  field
//	     0     8  baseOffset            assigned by the log; not covered by the CRC
//	     8     4  batchLength           size of the batch minus 12
//	    12     4  partitionLeaderEpoch  not covered by the CRC
//	    16     1  magic                 always 2
//	    17     4  crc                   CRC-32C (Castagnoli) of bytes 21..end
//	    21     2  attributes            bits 0-2 codec, 3 log-append-time,
//	                                    4 transactional, 5 control
//	    23     4  lastOffsetDelta       recordCount-1 for a batch as produced
//	    27     8  firstTimestamp        milliseconds since the epoch
//	    35     8  maxTimestamp
//	    43     8  producerId            -1 when not idempotent
//	    51     2  producerEpoch
//	    53     4  baseSequence
//	    57     4  recordCount
//	    61     -  records               compressed after the count
//
// Every integer in the header is big-endian. Each record inside is
//
//	length varint · attributes int8 · timestampDelta varlong ·
//	offsetDelta varint · keyLength varint · key · valueLength varint · value ·
//	headerCount varint · (keyLength varint · key · valueLength varint · value)*
//
// where the varints are zig-zag encoded as in Protocol Buffers and a length
// of -1 stands for null.
//
// Because the CRC leaves out the base offset, a broker assigns offsets to a
// producer's batch by rewriting eight bytes ([SetBaseOffset]) without touching
// or re-checking its payload.
//
// # Reading without allocating
//
// [Validate] and [ParseHeader] check a batch without copying it. A
// [RecordIter] walks the records of one batch after another, decompressing
// into a buffer it keeps, and hands out each [Record] as slices of that
// buffer: reading a batch allocates nothing per record once the buffers have
// grown to size.
//
// # Compression
//
// [None], [Gzip], [Snappy], [LZ4] and [Zstd] use pooled encoders and decoders
// from github.com/klauspost/compress and github.com/pierrec/lz4/v4. Snappy
// batches are written in the "xerial" framing of the Java client, and both
// that framing and a bare snappy block are read. LZ4 frames are framed here
// around pierrec's block codec, without a copy through a stream buffer or a
// second hash of the records (their CRC-32C covers them); lz4.go draws the
// frame.
package codecs
