/*
 * artifact.h — the content-addressed artifact store (model exports,
 * checkpoints, training shards). An artifact is named by the sha256 of its
 * bytes; writes are atomic (temp file, fsync, rename), so a reader sees a
 * whole file or none, and writing the same bytes twice is a no-op.
 *
 * Back ends: "fs://PATH" (or a plain path), files under PATH/sha256/ab/<hex>.
 * The interface is what an S3-compatible back end (PUT/GET by key, SigV4 via
 * libcurl) would implement; "s3://" is refused with AT_EUNSUPPORTED for now.
 *
 * Blocking file I/O: call from workers, CLIs or a uv threadpool job, never
 * from an event loop thread.
 */
#ifndef ATELIER_ARTIFACT_H
#define ATELIER_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct artifact_store;

/* uri NULL or "" = fs://var/artifacts. Creates the folders. */
int artifact_store_open(const char *uri, struct artifact_store **out) AT_MUST_CHECK;
void artifact_store_close(struct artifact_store *s);
const char *artifact_store_uri(const struct artifact_store *s);

/* Store a file's bytes; sha_hex (65 bytes) and size are filled in. */
int artifact_put_file(struct artifact_store *s, const char *src, char sha_hex[65], uint64_t *size) AT_MUST_CHECK;
int artifact_put_bytes(struct artifact_store *s, const void *data, size_t len, char sha_hex[65]) AT_MUST_CHECK;

/* Local path of an artifact (it may not exist: check with artifact_exists). */
int artifact_path(const struct artifact_store *s, const char *sha_hex, char *path, size_t len) AT_MUST_CHECK;
int artifact_exists(const struct artifact_store *s, const char *sha_hex);
/* Copy an artifact out to dst (atomically) after checking its sha256:
 * AT_ECORRUPT when the stored bytes do not match their name. */
int artifact_get_file(const struct artifact_store *s, const char *sha_hex, const char *dst) AT_MUST_CHECK;

/* "sha256:<hex>" style check that a string is 64 lowercase hex digits. */
int artifact_valid_sha(const char *sha_hex);

#endif
