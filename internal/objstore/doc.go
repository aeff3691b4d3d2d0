// Package objstore owns Weir's object stores: one small interface, [Store]
// (put, ranged get, list, delete, conditional put), with a local-directory
// implementation, [Dir], and an S3-compatible one, [S3]
// (github.com/minio/minio-go/v7; tested against versitygw, see s3test). The cold tier of the log and the parquet sink
// write through it; it knows nothing of segments or records.
//
// # Contract
//
// Keys are slash-separated relative paths ("events/date=2026-11-21/part-0-1-9.parquet");
// a key never starts with '/' nor holds a "." or ".." element. A Put is
// atomic: a reader sees the whole new object or none of it, never a part.
// PutIfAbsent stores the object only if no object has the key, atomically
// with respect to other PutIfAbsent calls, and fails with ErrExists
// otherwise. GetVersion reads a whole object and its version (S3: the
// ETag; Dir: a hash of the contents), and PutIfMatch replaces the object
// only if it is still at that version (S3: If-Match), atomically with
// respect to other PutIfMatch calls, and fails with ErrPrecondition
// otherwise: the log's cold tier writes its manifests so, and a second
// server on the same prefix is fenced out. Get reads a byte range; a
// missing key is ErrNotFound. List
// returns every key under a prefix in lexical order. Delete of a missing
// key succeeds.
//
// # Local directories
//
// [Dir] keeps an object as a file under its root directory. A Put writes
// a temporary file whose name starts with ".tmp-" in the key's directory,
// syncs it, renames it onto the key and syncs the directory; List leaves
// such temporary files out. PutIfAbsent links the synced temporary file
// to the key (link(2) fails if the key exists), so two writers never both
// win. PutIfMatch compares and renames under an flock of a lock file in
// the key's directory (".tmp-lock-NAME", left out of List). Get of a
// range copies to a local file with copy_file_range, and [Dir.Open] gives
// the object's file itself. [Dir.PutFile] moves a file already written on the same filesystem
// into place with a rename, without copying it.
package objstore
