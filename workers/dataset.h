/*
 * dataset.h — what the collect, prepare, train and evaluate stages share:
 * the manifest hash of a frozen dataset, the training shard format, small
 * helpers for stage inputs and the database (blocking libpq).
 *
 * Everything here but the dataset_db_* helpers is pure (no database, no model), so
 * tests/unit/test_jobs_dataset.c checks it without a cluster. docs/training.md
 * describes the formats.
 */
#ifndef ATELIER_WORKERS_DATASET_H
#define ATELIER_WORKERS_DATASET_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ---- manifest ---- */

struct manifest_entry {
	char domain[16]; /* "sketch" | "painting" */
	int64_t id;      /* images.id */
	char sha[65];    /* images.sha256, hex */
};

/*
 * sha256 (hex) of the text "DOMAIN ID SHA\n" per entry, entries sorted by
 * (domain, id) — sorts e in place, so the hash does not depend on the order
 * the rows came in. n == 0 hashes the empty text.
 */
void dataset_manifest_sha256(struct manifest_entry *e, size_t n, char hex[65]);

/*
 * How many members of one domain collect replays beside new_n new ones
 * (params.replay, docs/training.md): about replay x total, i.e.
 * new_n * replay / (1 - replay) rounded (all that fits when replay >= 1), at
 * least enough to reach min_n, at most max_items - new_n; never negative. The
 * caller caps it by what exists.
 */
long long dataset_replay_count(long long new_n, double replay, long long min_n, long long max_items);

/* ---- shards ---- */

/*
 * A shard: the samples of one split at one square size, uint8, NCHW.
 *
 *   offset  size  field (little-endian)
 *   0       8     magic "ATLRSHRD"
 *   8       4     format version (1)
 *   12      4     S, the square side
 *   16      4     NS, sketch samples
 *   20      4     NP, painting samples
 *   24      8     reserved (0)
 *   32      NS*S*S        sketches, 1 channel (0 = black ink, 255 = white)
 *   ...     NP*3*S*S      paintings, 3 planes per sample (R, G, B)
 *   ...     NS + NP       one flag byte per sample (SHARD_F_*)
 *   ...     8*(NS + NP)   the images.id each sample came from (int64)
 *
 * Shards live in the artifact store, named by their sha256, which is their
 * integrity check.
 */
#define SHARD_MAGIC "ATLRSHRD"
#define SHARD_VERSION 1
#define SHARD_HEADER 32
#define SHARD_F_PHOTO 0x01     /* a sketch extracted from a photo (sketchify) */
#define SHARD_F_AUGMENTED 0x02 /* a flipped / jittered copy */
/* A shard above this many bytes is refused (one process holds it in memory). */
#define SHARD_MAX_BYTES ((uint64_t)4 << 30)

struct shard {
	int size;
	int n_sketches, n_paintings;
	uint8_t *sketch;   /* n_sketches * S*S */
	uint8_t *painting; /* n_paintings * 3*S*S, planar per sample */
	uint8_t *sketch_flags, *painting_flags;
	int64_t *sketch_ids, *painting_ids;
	int cap_s, cap_p; /* allocated samples (builder) */
};

void shard_init(struct shard *s, int size);
void shard_free(struct shard *s); /* NULL and zeroed shards are fine */
/* gray: S*S bytes. */
int shard_add_sketch(struct shard *s, const uint8_t *gray, int64_t id, uint8_t flags) AT_MUST_CHECK;
/* rgb: S*S*3 interleaved (HWC) bytes; stored planar. */
int shard_add_painting(struct shard *s, const uint8_t *rgb, int64_t id, uint8_t flags) AT_MUST_CHECK;
/* *out is malloc'd. */
int shard_encode(const struct shard *s, uint8_t **out, size_t *len) AT_MUST_CHECK;
/* Copies out of data. AT_EUNSUPPORTED: wrong magic/version; AT_ECORRUPT: sizes disagree. */
int shard_decode(const uint8_t *data, size_t len, struct shard *out) AT_MUST_CHECK;
int shard_read_file(const char *path, struct shard *out) AT_MUST_CHECK;
/* Sample i as float32 in [-1, 1] (what am_trainer_step takes): S*S or 3*S*S floats. */
void shard_sketch_float(const struct shard *s, int i, float *dst);
void shard_painting_float(const struct shard *s, int i, float *dst);
/* Painting i back to interleaved RGB (S*S*3), for the evaluation scores. */
void shard_painting_rgb(const struct shard *s, int i, uint8_t *rgb);

/* ---- inputs (stage params: workers/params.h) ---- */

/* payload.inputs.<stage>.<key>, else payload.<key> (jobs enqueued by hand). Borrowed. */
json_t *dataset_input(json_t *payload, const char *stage, const char *key);

/* ---- blocking SQL on the worker's connection ---- */

/* Runs one parameterised statement (text params, NULL = SQL NULL); *res is
 * the result on success (caller PQclear()s). AT_EDB with the server's message
 * in why otherwise. binary: ask for binary results. */
int dataset_db_exec(PGconn *c, const char *sql, int n, const char *const *vals, int binary, PGresult **res, char *why,
		    size_t whylen) AT_MUST_CHECK;
/* The production version of a model: *found 0 when the channel is empty. */
int dataset_db_production(PGconn *c, const char *model, int *found, int64_t *version_id, int *version, char sha[65],
			  char *why, size_t whylen) AT_MUST_CHECK;
/*
 * Records files of the artifact store as referenced, so GET /v1/artifacts
 * serves them (sql/007_eval_artifacts.sql): shas is a JSON array of hex
 * digests, kind "sample" or "shard", content_type what the route answers
 * with; run (a JSON integer) and version_id (decimal text) may be NULL.
 * Idempotent: a sha already recorded keeps its first row.
 */
int dataset_db_artifact_refs(PGconn *c, const json_t *shas, const char *kind, const char *content_type,
			     const json_t *run, const char *version_id, char *why, size_t whylen) AT_MUST_CHECK;

#endif
