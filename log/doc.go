// Package log owns the storage of one partition: an append-only sequence of
// Kafka RecordBatch v2 batches kept in segment files, with sparse indexes,
// offset assignment, fsync policies, crash recovery and retention. It knows
// nothing of topics, consumer groups or the network; the hub builds those on
// top of it.
//
// # Files
//
// A log is a directory. Each segment is named for the offset of its first
// batch, zero-padded to 20 digits:
//
//	00000000000000000000.log        batches, byte for byte as produced,
//	                                 with the base offset rewritten
//	00000000000000000000.index      offset index, written when the segment
//	                                 is closed
//	00000000000000000000.timeindex  time index, written when closed
//	00000000000000052107.log        the active segment: the only one written
//	.lock                           flock held while the log is open
//
// A .log file is a plain concatenation of batches:
//
//	+----------------------+----------------------+-----+
//	| batch (61 B header + | batch                | ... |
//	|  records)            |                      |     |
//	+----------------------+----------------------+-----+
//
// The offset index holds 8-byte big-endian entries, one for the first batch
// and then one at least every IndexIntervalBytes:
//
//	+-------------------------------+-------------------------------+
//	| offset - base offset (uint32) | file position of batch (uint32)|
//	+-------------------------------+-------------------------------+
//
// The time index holds 12-byte entries, added with index entries whenever
// the largest timestamp so far grows, plus a last one when the segment
// closes:
//
//	+-------------------------------+-------------------------------+
//	| max timestamp so far (int64)  | offset - base offset (uint32) |
//	+-------------------------------+-------------------------------+
//
// Index files are written whole to a temporary name, synced and renamed
// when a segment closes, so one is either complete or absent. While a
// segment is active its indexes live in memory, growing with the data;
// recovery rebuilds them. Once closed, a segment's indexes are read from
// their files when a read needs them and kept in memory only while the
// FileCache's index memory allows (least recently used dropped first,
// FileCache.SetIndexMemory): a log of many closed segments holds neither
// descriptors, nor mappings, nor memory for the indexes nobody reads.
//
// A segment is closed (rolled) under the append lock only by creating the
// next one; a background sealer then fdatasyncs the old segment's data and
// the directory, publishes what SyncAlways had not yet published, and
// writes the index files. Until then SyncAlways appenders and Sync wait for
// it before counting anything later as durable, and so does the sealer of
// any segment rolled after it: sealers sync concurrently, but publish and
// count as durable in roll order. An index file therefore exists only for
// a segment whose data was synced, as was every segment's before it: a
// closed segment without one is recovered like the active segment.
//
// # Writing
//
// Append validates every batch (magic, CRC-32C, counts, size), assigns
// offsets by rewriting each base offset in place, and writes the batches
// with one write at the end of the active segment. Readers see a batch only
// once the high watermark covering it is published, after the write (and,
// with SyncAlways, after the fdatasync): never part of a batch.
//
// A segment's blocks are reserved (fallocate, keeping the file's size) a
// bounded step ahead of the write position, an eighth of the segment's data
// between 64 KiB and 4 MiB, so that appends rarely wait on block allocation;
// the reserve is given back when the segment is sealed or the log closed. A
// partition takes its data plus that step on disk, never a whole segment.
// With SyncAlways the step is written with zeros instead (Options.
// PrewriteBytes), so that appends overwrite written blocks, whose
// fdatasync needs no journal commit; it is given back on seal, Close and
// when the log stops growing, and recovery cuts zeros after the last
// batch like a torn tail (see prewrite.go).
// When retention deletes a segment of a SyncAlways log, its file is kept
// (renamed NNN.recycle, at most Options.RecycleSegments of them) and the
// next segment takes it, once no reader holds it: appends overwrite blocks
// written before, and the old batches after the data, whose offsets lie
// below the segment's, are cut by recovery with no .corrupt file; the kept
// files are given back when the log stops growing (see recycle.go).
//
// The sync policy decides when data reaches the disk:
//
//   - SyncAlways: Append returns after an fdatasync that started after its
//     write. Concurrent appenders share fdatasyncs (group commit): one loop
//     runs them back to back while anyone waits, each acknowledging every
//     append written before it started; before each it waits for the
//     appenders the last one released to write again (never for one that is
//     not coming), so that one sync takes them all rather than half. Their
//     writes are combined too: appends that arrive while one write runs
//     are staged and written together by the next (see stage.go), each
//     Append still getting its own write's error. A caller that takes
//     offsets under a lock of its own uses AppendStaged and waits for the
//     write after releasing it, so that its callers' appends combine too.
//   - SyncInterval: Append returns after the write; a timer syncs dirty data
//     every SyncInterval.
//   - SyncNever: the operating system decides.
//
// # Reading
//
// Read returns file sections (file, position, length) of whole batches,
// starting with the batch that holds the requested offset: the zero-copy
// path a network fetch sends with sendfile. ReadBatches copies the same
// batches into a buffer after checking their CRCs, and Iterator decodes
// records for in-process consumers. Many readers run at once without
// locks; Wait blocks until the log grows past an offset.
//
// # Recovery
//
// Open trusts the index of a closed segment after a sanity check (sizes,
// order, and a scan of the batches after its last entry) and rebuilds a
// damaged one with a full CRC-checked scan. The active segment, and a
// closed segment without an index (its seal was interrupted), are always
// scanned and CRC-checked; a torn or garbled tail is cut off, and the bytes
// cut are kept beside the segment in a .corrupt file. Offsets cut from a
// closed segment are not reused: the next segment starts where it did. Corruption found
// inside a closed segment is never served: reads that reach it fail with a
// *CorruptError, and Verify reports it with offset and file position.
//
// # File systems
//
// A log reaches its files through an FS (Options.FS): the operating
// system's by default. MemFS holds files in memory and remembers what was
// synced, so that CrashClone can show what a power cut would leave; the
// tests of the fsync policies and of recovery run on it, since a kill -9
// keeps the page cache and cannot tell a missing fdatasync.
//
// # Many logs
//
// A log costs its data plus a bounded reserve on disk, and nothing that
// grows with the number of logs beside it: logs that share a FileCache
// share one limit on open segment files (a segment's file is opened when
// read or written and closed when idle, least recently used first), logs
// that share a Syncer have their interval fsyncs run by its few goroutines
// instead of a timer each, and with SkipLock the caller's lock replaces a
// lock file per log.
//
// # Compaction
//
// With Options.Compact (Kafka's cleanup.policy compact), Compact rewrites
// closed segments keeping only the latest record of each key; offsets are
// kept, so the removed records leave gaps, and a batch keeps its base
// offset and offset range with fewer records. A tombstone (a key with a
// null value) that is the latest of its key goes once its batch is older
// than DeleteRetention; the offset after the newest tombstone removed is
// the delete horizon, kept in a file so that readers resuming below it are
// told (CheckResume) instead of silently missing deletes:
//
//	pass: scan records from offset F into a key map (128-bit key hash ->
//	      latest offset, a fixed table of CompactMapBytes) until it is
//	      full at offset U; rewrite each segment below U, oldest first,
//	      dropping records the map supersedes; then F = U, until the end
//	      of the closed segments.
//
// As in Kafka's log cleaner, a checkpoint (the file cleaner-checkpoint,
// written atomically after a run) marks where the clean part ends: below
// it each key is at most once. A run starts its passes at the checkpoint
// (F), so only the dirty segments closed since are read into key maps,
// and it runs only once they are MinCleanableRatio of the closed bytes
// (Kafka's min.cleanable.dirty.ratio). Below the checkpoint a tombstone
// whose key is in no map is the latest of its key; the clean segments are
// read again between runs only when such a tombstone comes of age (the
// local ones only: those in a cold tier wait for the next run). A lost
// or damaged checkpoint makes the whole log dirty: slower, never wrong.
// With a Tier the checkpoint reads "OFFSET cold" when the cold segments
// below it were cleaned too; one without (written by a run that could not
// rewrite them) makes the whole log dirty once.
//
// Each rewritten segment is swapped in through files beside it:
//
//	00000000000000000000.log.cleaned        the cleaned batches    1. written,
//	00000000000000000000.index.cleaned      its indexes               synced
//	00000000000000000000.timeindex.cleaned
//	delete-horizon                          if tombstones went     2. synced
//	00000000000000000000.swap               marker: the commit     3. synced
//	rename *.cleaned over the segment's files (under the append    4.
//	lock, no fsync), sync the directory, remove the marker          5.
//
// Open finishes a swap whose marker exists (renaming the cleaned files
// left) and deletes cleaned files without one, so a crash or power cut at
// any point leaves the old segment or the new one, never a mix that loses
// a key. Segments are cleaned oldest first, so the values a tombstone
// deletes are gone from disk before the tombstone can be. Compaction reads
// and writes beside appends and reads; a reader holding the old segment
// keeps its file open.
//
// # Retention
//
// EnforceRetention deletes whole closed segments, oldest first, that are
// older than RetentionTime (by their largest timestamp) or that keep the
// log above RetentionBytes, and advances the log start offset. Segment files
// are reference counted, so a reader holding a section keeps its file open
// until it is done. A deleted segment's file is renamed NNN.log.deleted at
// once, and unlinked (and its last descriptor closed) on the file cache's
// removal goroutine, since freeing its blocks can take a disk hundreds of
// milliseconds: no append, read or request waits for it (see
// FileCache.RemoveLater); Open removes the .deleted files a crash left.
// Closed segments are immutable but for compaction, which
// replaces one whole; that leaves room for moving closed segments to a
// cold tier.
//
// # Cold tier
//
// With Options.Tier (an object store's space for this log, adapted by the
// caller: the log imports no store), closed segments move to the tier in
// the background and every offset stays readable. The tier holds the
// segment's files as they are, named by base offset and the tag of the
// log open that uploaded them, and a manifest:
//
//	manifest.json                   {"version":1,"writer":"9f…","generation":41,
//	                                 "segments":[{"base":0,"next":812,"bytes":1048000,
//	                                 "maxTimestamp":...,"indexBytes":2048,"tag":"9f…"}, ...]}
//	00000000000000000000.9f….log        the segment, byte for byte
//	00000000000000000000.9f….index      its offset index
//	00000000000000000000.9f….timeindex  its time index
//
// (segments uploaded before tags have none: 00000000000000000000.log.)
// A segment is in the tier once the manifest lists it. A tier pass (after
// each seal, on EnforceRetention, and after a backoff of 100ms doubling to
// 30s while passes fail) does, in order:
//
//  1. forget the manifest's segments below the start offset: the manifest
//     is replaced first, then their objects are deleted;
//  2. upload each sealed segment the manifest lacks, oldest first: its three
//     objects (the .log with copy_file_range to a directory store), then
//     the manifest listing it, once per 16 segments and at the end;
//     A local segment the manifest lists at another size (compaction
//     rewrote it) goes up again under names of its own; the manifest
//     swaps to it, then the old version's objects are deleted;
//  3. delete the local copies of the oldest listed segments that
//     LocalRetentionTime or LocalRetentionBytes no longer keep: the log
//     swaps each for a cold segment, then removes the files (while a
//     Compact runs, only those its last pass is done with: a segment it
//     may still rewrite stays local until a later pass);
//  4. merge one run of adjacent small cold segments (each under half of
//     TierMergeBytes, together at most TierMergeBytes, which defaults to
//     SegmentBytes) into one: segments that rolled early or that
//     compaction shrank otherwise cost the store a request each per read.
//     The merged objects go up under names of their own, the manifest
//     swaps to them, the log swaps the run for one segment (see
//     coldmerge.go); a pass that merged asks for another;
//  5. delete the objects of cold segments that compaction or a merge
//     replaced, once no reader holds them.
//
// Compact rewrites cold segments as it does local ones: the cleaned files
// go up under names of their own, the manifest swaps to them (a
// conditional write), the log swaps the segment, and step 5 deletes the
// old version; a crash before the manifest write leaves unlisted objects
// (swept), after it the old version's (swept).
//
// A crash between any two steps leaves every offset readable: unlisted
// objects are garbage (a later upload uses the new open's tag), and a
// local copy goes only after the manifest listing it is stored. With a
// Tier that lists its objects (TierLister), the first pass a minute after
// Open and then one every TierOrphanAge (default 1h) sweep the segment
// objects the manifest does not list and that are older than TierOrphanAge; never
// a fenced log's, nor when the store's manifest is not the one last
// written or read. The uploader records what it uploads at least every
// TierOrphanAge/4, so no object of an upload under way is that old. The first
// manifest is created with a conditional put (Tier.PutIfAbsent), and every
// later write is conditional on the version the log read or wrote last
// (Tier.PutIfMatch: If-Match on S3's ETag). A log whose write is refused
// has been fenced out by another server on the same prefix: it logs an
// error, stops uploading, keeps its local segments readable
// (TierStats.Fenced), and refuses appends with ErrTierFenced until it is
// opened again, rather than grow a disk nothing will empty.
// Because object names carry the uploader's tag, a fenced server never
// overwrites an object the winner's manifest lists. RetentionTime and
// RetentionBytes count cold and local segments together; a store that
// fails only holds uploads (and so local deletion) back.
//
// Open reads the manifest and puts the listed segments that end where the
// local ones begin in front of them; an empty directory starts at the
// manifest's end, so a new server pointed at a tier serves it. Reads of a
// cold segment (Read, ReadBatches, iterators, OffsetForTime, ScanHeaders)
// fetch its offset index once, then go through a ColdCache: chunks of
// DefaultChunkBytes (4 MiB) fetched with one ranged GET each into files
// kept open while cached, up to a limit, with the next four chunks fetched
// ahead in parallel (into the next segment, and its index, near the end of
// one). A cold Section has no File (no sendfile); AppendTo reads it. A
// tier whose objects are local files (TierOpener: a directory store, a NAS
// mount) is read from those files instead, with pread and sendfile, and
// no cache. A failed fetch is an error wrapping ErrTierUnavailable, which
// a reader may retry.
package log
