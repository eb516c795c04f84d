/*
 * spool.h — contributed sketches waiting on disk until atelierd takes them.
 *
 * One file per contribution, written atomically (temporary name, fsync,
 * rename, fsync of the folder), named by arrival time so that a sorted
 * listing is oldest first. A file is removed only after atelierd answered
 * 2xx or a definitive 4xx (uplink.c); atelierd deduplicates by content, so a
 * file sent twice (answer lost, crash before the unlink) is still one row.
 *
 * Bounded by a file count and a byte total, accounted in memory (seeded by a
 * scan at open): a contribution is reserved on the loop before its write is
 * queued, so the bound holds however many writes are in flight.
 *
 * File format (spool_write and spool_read are the only code that knows it):
 * the line "ATSPOOL1\n", one line of JSON metadata ({"contributor":...,
 * "content_type":..., "received_at":...}), then the image bytes.
 *
 * The spool is storage only: POST /api/contribute lives in contribute.c and
 * the delivery to atelierd in uplink.c; neither is linked by the spool.
 */
#ifndef SERVE_SPOOL_H
#define SERVE_SPOOL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

struct spool;

/* Creates the folder if needed, removes stale temporaries, counts files. Blocking. */
int spool_open(const char *dir, int max_files, size_t max_bytes, struct spool **out) AT_MUST_CHECK;
void spool_free(struct spool *s);

/* The size of the file spool_write makes of meta_len bytes of metadata and an
 * image of img_len bytes: what to reserve. */
size_t spool_file_size(size_t meta_len, size_t img_len);
/* Reserve room for one file of `bytes`; AT_ETOOBIG when the spool is full. */
int spool_reserve(struct spool *s, size_t bytes) AT_MUST_CHECK;
void spool_unreserve(struct spool *s, size_t bytes);
/* Writes a reserved file of metadata meta (compact JSON, one line: AT_EINVAL
 * if it holds a newline) and the image (blocking: threadpool). Counts it as
 * accepted once it is durable. */
int spool_write(struct spool *s, const char *meta, const void *img, size_t img_len) AT_MUST_CHECK;

/* spool_write for a file found again by key (16..64 of [0-9a-f]: the first
 * hex digits of a receipt's sha256), which ends its name. */
int spool_write_keyed(struct spool *s, const char *key, const char *meta, const void *img,
		      size_t img_len) AT_MUST_CHECK;
/* The path of the file written with key (blocking); AT_ENOTFOUND if none. */
int spool_find(struct spool *s, const char *key, char *path, size_t len) AT_MUST_CHECK;
/* Removes the file written with key: 0, or AT_ENOTFOUND when there is none
 * (never spooled, or delivered). A file the uplink is sending is waited for
 * (at most wait_s seconds, then AT_EBUSY): once the send ended it is either
 * delivered (AT_ENOTFOUND: ask atelierd) or back in the queue (removed: 0),
 * never both. Blocking. */
int spool_withdraw(struct spool *s, const char *key, int wait_s) AT_MUST_CHECK;
/* The uplink marks the file it sends (AT_ENOTFOUND: withdrawn meanwhile,
 * skip it) and unmarks it when the answer is in and the file is removed or
 * kept. */
int spool_send_begin(struct spool *s, const char *path) AT_MUST_CHECK;
void spool_send_end(struct spool *s);

/* The oldest file's path (blocking); AT_ENOTFOUND when empty. */
int spool_oldest(struct spool *s, char *path, size_t len) AT_MUST_CHECK;
/* Reads a spool file: *meta (caller decrefs), *img (malloc'd). AT_ECORRUPT if malformed. */
int spool_read(const char *path, json_t **meta, uint8_t **img, size_t *len) AT_MUST_CHECK;
/* The same on a file held in memory: *meta, and where the image starts. */
int spool_decode(const uint8_t *buf, size_t n, json_t **meta, size_t *img_off) AT_MUST_CHECK;
/* Deletes a file and releases its room. */
void spool_remove(struct spool *s, const char *path);

/* Files counted (written or reserved) and their bytes. */
void spool_depth(struct spool *s, int *files, size_t *bytes);
/* Files written and not yet delivered. */
int spool_ready(struct spool *s);
int spool_metrics(struct spool *s, struct at_buf *b) AT_MUST_CHECK;

#endif
