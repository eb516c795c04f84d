/*
 * cache.c — the step cache: a job's key, the lookup before its handler runs,
 * the entry after it succeeded (cache.h; schema in sql/008_step_cache.sql).
 *
 * Everything here runs on the handlers' connection (job_db), never on the
 * queue's: the claim and the completion stay the statements docs/queue.md
 * measures, and a kind that is not cacheable costs nothing at all.
 */
#include "cache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "fsutil.h"
#include "log.h"
#include "worker.h"

#if defined(__has_include)
#if __has_include("code_version.h")
#include "code_version.h"
#endif
#endif
#ifndef ATELIER_CODE_VERSION
#define ATELIER_CODE_VERSION ""
#endif

const char *step_cache_code_version(void) { return ATELIER_CODE_VERSION; }

int step_cache_key(enum job_cache mode, const char *kind, json_t *payload, const char *champion, const char *code,
		   char key[65])
{
	key[0] = 0;
	if (mode == JOB_CACHE_NEVER || !code || !*code)
		return AT_EINVAL;
	json_t *params = json_object_get(payload, "params"), *gate = json_object_get(payload, "gate"),
	       *inputs = json_object_get(payload, "inputs"), *model = json_object_get(payload, "model");
	/* Absent and null are the same to a handler: both become null here. */
	json_t *k = json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:O?}", "code", code, "kind", kind, "model", model,
			      "params", params, "gate", gate, "inputs", inputs);
	if (k && mode == JOB_CACHE_CHAMPION &&
	    json_object_set_new(k, "champion", champion ? json_string(champion) : json_null()) < 0) {
		json_decref(k);
		k = NULL;
	}
	/* Sorted keys, no whitespace: the same meaning gives the same bytes.
	 * Reals print as %.17g, so a number read back from jsonb hashes alike. */
	char *text = k ? json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
	json_decref(k);
	if (!text)
		return AT_ENOMEM;
	int rc = at_sha256_hex(text, strlen(text), key);
	free(text);
	return rc;
}

int step_cache_begin(struct job_ctx *ctx, const struct job_handler *h, int64_t token, int *hit)
{
	*hit = 0;
	ctx->cache_key[0] = 0;
	ctx->cached_from = 0;
	json_t *payload = ctx->payload;
	if (h->cache == JOB_CACHE_NEVER || !json_is_true(json_object_get(payload, "cache")))
		return 0;
	const char *code = step_cache_code_version();
	if (!*code) {
		log_warn("job %" PRId64 " (%s): this build has no code version; step cache off", ctx->id, ctx->kind);
		return 0;
	}
	PGconn *c = job_db(ctx);
	char why[512] = "", champion[65] = "";
	int rc;
	if (h->cache == JOB_CACHE_CHAMPION) {
		const char *model = json_string_value(json_object_get(payload, "model"));
		int found = 0, version = 0;
		int64_t vid = 0;
		if (model &&
		    (rc = dataset_db_production(c, model, &found, &vid, &version, champion, why, sizeof why)) < 0)
			goto fail;
		if (!found)
			champion[0] = 0;
	}
	char key[65];
	if ((rc = step_cache_key(h->cache, ctx->kind, payload, champion[0] ? champion : NULL, code, key)) < 0)
		goto fail;

	/* One round trip: find a succeeded job with this key, and store the key
	 * (and the source, on a hit) on our row while the token says it is ours. */
	char id[24], tok[24];
	snprintf(id, sizeof id, "%" PRId64, ctx->id);
	snprintf(tok, sizeof tok, "%" PRId64, token);
	const char *v[3] = {key, id, tok};
	PGresult *r;
	if ((rc = dataset_db_exec(
		     c,
		     "WITH hit AS (SELECT j.id, j.run_id, j.result FROM job_cache c JOIN jobs j ON j.id = c.job_id"
		     "  WHERE c.cache_key = $1 AND j.state = 'succeeded' AND j.id <> $2::bigint),"
		     " upd AS (UPDATE jobs SET cache_key = $1, cached_from = (SELECT id FROM hit)"
		     "  WHERE id = $2::bigint AND owner_token = $3::bigint RETURNING id)"
		     " SELECT (SELECT id FROM hit), (SELECT run_id FROM hit), (SELECT result::text FROM hit),"
		     " (SELECT count(*) FROM upd)",
		     3, v, 0, &r, why, sizeof why)) < 0)
		goto fail;
	snprintf(ctx->cache_key, sizeof ctx->cache_key, "%s", key);
	if (!PQgetisnull(r, 0, 0) && strcmp(PQgetvalue(r, 0, 3), "1") == 0) {
		json_error_t jerr;
		json_t *res = json_loads(PQgetvalue(r, 0, 2), 0, &jerr);
		if (res) {
			ctx->cached_from = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
			job_set_result(ctx, res);
			*hit = 1;
			log_info("job %" PRId64 " (%s): cached: the result of job %" PRId64 " (run %s), key %.12s",
				 ctx->id, ctx->kind, ctx->cached_from, PQgetisnull(r, 0, 1) ? "-" : PQgetvalue(r, 0, 1),
				 key);
		}
	}
	PQclear(r);
	return 0;
fail:
	log_warn("job %" PRId64 " (%s): step cache lookup failed (%s); running it", ctx->id, ctx->kind,
		 why[0] ? why : at_strerror(rc));
	ctx->cache_key[0] = 0;
	return rc;
}

void step_cache_record(struct job_ctx *ctx)
{
	if (!ctx->cache_key[0] || ctx->cached_from)
		return;
	char id[24], why[512] = "";
	snprintf(id, sizeof id, "%" PRId64, ctx->id);
	const char *v[2] = {ctx->cache_key, id};
	PGresult *r;
	/* The first job per key stays while it exists and succeeded (a later one
	 * with the same key ran only because the lookup raced it); an entry whose
	 * job is gone (its run deleted) is taken over. */
	if (dataset_db_exec(
		    job_db(ctx),
		    "INSERT INTO job_cache (cache_key, job_id) VALUES ($1, $2::bigint) ON CONFLICT (cache_key) DO UPDATE"
		    " SET job_id = EXCLUDED.job_id, created_at = now() WHERE NOT EXISTS (SELECT 1 FROM jobs j"
		    " WHERE j.id = job_cache.job_id AND j.state = 'succeeded')",
		    2, v, 0, &r, why, sizeof why) < 0) {
		log_warn("job %" PRId64 " (%s): could not record its step cache entry: %s", ctx->id, ctx->kind, why);
		return;
	}
	PQclear(r);
}
