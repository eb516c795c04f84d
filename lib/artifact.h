/*
 * artifact.h — the content-addressed artifact store (model exports,
 * checkpoints, training shards, evaluation samples). An artifact is named by
 * the sha256 of its bytes; a reader sees a whole artifact or none, and writing
 * the same bytes twice is a no-op. Every whole read (artifact_get_file) checks
 * the bytes against their name: AT_ECORRUPT when they do not match.
 *
 * Back ends (one file each; lib/artifact_impl.h is their common table):
 *   "fs://PATH" (or a plain path): files under PATH/sha256/ab/<hex>; writes
 *       are atomic (temp file, fsync, rename). lib/artifact_fs.c.
 *   "s3://BUCKET[/PREFIX]": objects PREFIX/sha256/ab/<hex> in an
 *       S3-compatible store (AWS S3, MinIO, Ceph RGW), signed with libcurl's
 *       SigV4; endpoint, region, credentials, path-style addressing,
 *       multipart sizes and retries from the environment (ATELIER_S3_* and
 *       the usual AWS_* variables; docs/artifacts.md). lib/artifact_s3.c.
 *
 * artifact_path() is the fs:// store's alone (an S3 object has no local
 * path; it answers AT_EUNSUPPORTED there): callers that need the bytes use
 * artifact_get_file() into their own cache, atelierd's downloads redirect to
 * artifact_presign() (docs/artifacts.md says why).
 *
 * Blocking I/O (files or HTTP): call from workers, CLIs or a uv threadpool
 * job, never from an event loop thread. A store may be used by one thread at
 * a time (the s3 store keeps one libcurl handle).
 */
#ifndef ATELIER_ARTIFACT_H
#define ATELIER_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct artifact_store;

/* uri NULL or "" = fs://var/artifacts. Creates the folders (fs) or checks
 * the settings (s3: no request is made). */
int artifact_store_open(const char *uri, struct artifact_store **out) AT_MUST_CHECK;
void artifact_store_close(struct artifact_store *s);
const char *artifact_store_uri(const struct artifact_store *s);
/* 1 for fs:// (artifact_path works), 0 for a remote store. */
int artifact_store_is_local(const struct artifact_store *s);

/* Store a file's bytes; sha_hex (65 bytes) and size are filled in. */
int artifact_put_file(struct artifact_store *s, const char *src, char sha_hex[65], uint64_t *size) AT_MUST_CHECK;
int artifact_put_bytes(struct artifact_store *s, const void *data, size_t len, char sha_hex[65]) AT_MUST_CHECK;

/* Local path of an artifact (it may not exist: check with artifact_exists).
 * fs:// only: AT_EUNSUPPORTED for a remote store. */
int artifact_path(const struct artifact_store *s, const char *sha_hex, char *path, size_t len) AT_MUST_CHECK;
/* Where the artifact lives, for logs and records: "fs://ROOT/sha256/ab/<hex>"
 * or "s3://BUCKET/PREFIX/sha256/ab/<hex>". */
int artifact_uri(const struct artifact_store *s, const char *sha_hex, char *uri, size_t len) AT_MUST_CHECK;
int artifact_exists(const struct artifact_store *s, const char *sha_hex);
/* Size of a stored artifact (HEAD): AT_ENOTFOUND when absent. */
int artifact_stat(const struct artifact_store *s, const char *sha_hex, uint64_t *size) AT_MUST_CHECK;
/* Copy an artifact out to dst (atomically) after checking its sha256:
 * AT_ECORRUPT when the stored bytes do not match their name. */
int artifact_get_file(const struct artifact_store *s, const char *sha_hex, const char *dst) AT_MUST_CHECK;

/* Stream bytes [start, end] (inclusive) of an artifact to fn as they arrive;
 * fn returns 0 to go on, < 0 to stop (that code is returned). A part cannot
 * be checked against the name: a caller that reads the whole artifact this
 * way checks the sha itself (or uses artifact_get_file). */
typedef int (*artifact_sink_fn)(const void *data, size_t len, void *arg);
int artifact_read_range(const struct artifact_store *s, const char *sha_hex, uint64_t start, uint64_t end,
			artifact_sink_fn fn, void *arg) AT_MUST_CHECK;

/* Every artifact of the store, in no promised order; fn returns < 0 to stop.
 * mtime: seconds since the epoch the artifact was last written. Names in the
 * store that are not artifacts (temp files, foreign keys) are skipped. */
struct artifact_info {
	char sha[65];
	uint64_t size;
	int64_t mtime;
};
int artifact_list(const struct artifact_store *s, int (*fn)(const struct artifact_info *, void *),
		  void *arg) AT_MUST_CHECK;
/* Remove an artifact (absent: 0). For atelier gc, which decides what is
 * unreferenced. */
int artifact_delete(struct artifact_store *s, const char *sha_hex) AT_MUST_CHECK;

/* A URL that GETs the artifact without credentials for ttl_s seconds (SigV4
 * query signing); Range headers work on it. s3:// only: AT_EUNSUPPORTED for
 * fs://, whose bytes atelierd streams itself. */
int artifact_presign(const struct artifact_store *s, const char *sha_hex, int ttl_s, char *url,
		     size_t len) AT_MUST_CHECK;

/* "sha256:<hex>" style check that a string is 64 lowercase hex digits. */
int artifact_valid_sha(const char *sha_hex);

#endif
