/*
 * cache.h — the step cache (docs/training.md, "Caching and skipping";
 * sql/008_step_cache.sql). Internal to workers/.
 *
 * A stage whose kind is cacheable (job_handler.cache) and whose payload says
 * "cache": true (the run state machine copies the stage's YAML `cache`, default
 * true; jobs enqueued by hand carry no such key and are never cached) gets a
 * key: sha256 of the canonical JSON
 *
 *   {"code": ATELIER_CODE_VERSION, "kind", "model", "params", "gate", "inputs"
 *    [, "champion": production sha256 | null]}
 *
 * where inputs are the results of the stages it needs, and "champion" is
 * added for kinds whose result depends on the model's production version
 * (evaluate scores against it). A succeeded job with the same key lends its
 * result: the job completes without running its handler, and
 * jobs.cached_from names the job it came from.
 */
#ifndef ATELIER_WORKERS_CACHE_H
#define ATELIER_WORKERS_CACHE_H

#include <jansson.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

/* The worker's code version: a content hash over the sources that decide job
 * results (workers/, models/, lib/), computed by the Makefile into
 * $(BUILD)/gen/code_version.h; "" when the build did not provide one (the
 * cache is then off: a key without a code version could reuse results of
 * other code). */
const char *step_cache_code_version(void);

/* The key of a job as 64 hex digits + NUL (pure: no database). champion is
 * the production version's sha256, or NULL when there is none; it enters the
 * key only for JOB_CACHE_CHAMPION. AT_EINVAL for JOB_CACHE_NEVER. */
int step_cache_key(enum job_cache mode, const char *kind, json_t *payload, const char *champion, const char *code,
		   char key[65]) AT_MUST_CHECK;

/* Before the handler runs: when the job is cacheable, compute its key, store
 * it on the job row and look for a succeeded job with the same key. On a hit,
 * *hit = 1, the context's result is that job's result and the row's
 * cached_from names it. 0 also when the job is not cacheable (*hit = 0); a
 * negative code when the database failed (the job then simply runs). */
int step_cache_begin(struct job_ctx *ctx, const struct job_handler *h, int64_t token, int *hit) AT_MUST_CHECK;

/* After the job completed by running: its key becomes a cache entry (the
 * first job per key stays). Errors are logged, never fatal. */
void step_cache_record(struct job_ctx *ctx);

#endif
