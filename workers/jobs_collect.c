/*
 * jobs_collect.c — the collect stage: freeze a dataset.
 *
 * One REPEATABLE READ transaction on the worker's connection reads the
 * accepted images of split 'train' (newest first by id, at most max_items of
 * each domain) and of split 'holdout' (same cap), and writes datasets +
 * dataset_members (the training set: lineage) + dataset_holdout (the frozen
 * evaluation set). Holdout, rejected and deleted images never enter the
 * training set. The manifest hash is dataset_manifest_sha256() over the
 * training members.
 *
 * Idempotent: the dataset row carries the job id (params.job, unique index),
 * and a per-job advisory lock (session level, released at the end)
 * serialises two attempts; an attempt that finds
 * its job's dataset returns it instead of freezing another.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dataset.h"
#include "job.h"
#include "log.h"

struct frozen {
	struct manifest_entry *e;
	size_t n;
	int sketches, paintings;
	char manifest[65];
};

static void frozen_free(struct frozen *f) { free(f->e); }

/* Appends the rows (id, domain, sha hex) of one query to f. */
static int read_members(PGconn *c, const char *split, long long max_items, struct frozen *f, char *why,
			size_t whylen)
{
	static const char *const domains[] = {"sketch", "painting"};
	for (int d = 0; d < 2; d++) {
		char lim[32];
		snprintf(lim, sizeof lim, "%lld", max_items);
		const char *v[3] = {domains[d], split, lim};
		PGresult *r;
		int rc = db_exec(c,
				 "SELECT id, encode(sha256, 'hex') FROM images"
				 " WHERE status = 'accepted' AND domain = $1 AND split = $2 ORDER BY id DESC LIMIT $3",
				 3, v, 0, &r, why, whylen);
		if (rc < 0)
			return rc;
		int n = PQntuples(r);
		struct manifest_entry *e = realloc(f->e, (f->n + (size_t)n + 1) * sizeof *e);
		if (!e) {
			PQclear(r);
			return AT_ENOMEM;
		}
		f->e = e;
		for (int i = 0; i < n; i++) {
			struct manifest_entry *m = &f->e[f->n++];
			snprintf(m->domain, sizeof m->domain, "%s", domains[d]);
			m->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
			snprintf(m->sha, sizeof m->sha, "%s", PQgetvalue(r, i, 1));
		}
		if (d == 0)
			f->sketches = n;
		else
			f->paintings = n;
		PQclear(r);
	}
	dataset_manifest_sha256(f->e, f->n, f->manifest);
	return 0;
}

/* "{1,2,3}" for a bigint[] parameter. */
static char *id_array(const struct frozen *f)
{
	struct at_buf b;
	at_buf_init(&b, (size_t)1 << 30);
	int rc = at_buf_addstr(&b, "{");
	for (size_t i = 0; rc == 0 && i < f->n; i++)
		rc = at_buf_printf(&b, "%s%lld", i ? "," : "", (long long)f->e[i].id);
	if (rc == 0)
		rc = at_buf_addstr(&b, "}");
	if (rc < 0) {
		at_buf_free(&b);
		return NULL;
	}
	return at_buf_steal(&b, NULL);
}

static json_t *result_of(PGresult *r, int row)
{
	/* columns: id, manifest_sha256, sketches, paintings, params */
	json_error_t jerr;
	json_t *params = json_loads(PQgetvalue(r, row, 4), 0, &jerr);
	json_t *res = json_pack("{s:I, s:s, s:I, s:I, s:{s:O?, s:O?, s:O?}, s:O?}", "dataset",
				(json_int_t)strtoll(PQgetvalue(r, row, 0), NULL, 10), "manifest_sha256",
				PQgetvalue(r, row, 1), "sketches", (json_int_t)strtoll(PQgetvalue(r, row, 2), NULL, 10),
				"paintings", (json_int_t)strtoll(PQgetvalue(r, row, 3), NULL, 10), "holdout", "sketches",
				json_object_get(params, "holdout_sketches"), "paintings",
				json_object_get(params, "holdout_paintings"), "manifest_sha256",
				json_object_get(params, "holdout_manifest_sha256"), "order", json_object_get(params, "order"));
	json_decref(params);
	return res;
}

int job_collect(struct job_ctx *ctx)
{
	json_t *payload = job_payload(ctx), *params = dataset_params(payload);
	long long min_s = dataset_param_int(params, "min_sketches", 50);
	long long min_p = dataset_param_int(params, "min_paintings", 50);
	long long max_items = dataset_param_int(params, "max_items", 100000);
	json_t *run = json_object_get(payload, "run");
	const char *stage = json_string_value(json_object_get(payload, "stage"));
	PGconn *c = job_db(ctx);
	struct frozen train = {0}, hold = {0};
	char why[512] = "", job[32], runs[32];
	char *train_ids = NULL, *hold_ids = NULL, *pjson = NULL;
	PGresult *r = NULL;
	int rc, in_tx = 0, locked = 0;

	if (min_s < 0 || min_p < 0 || max_items < 1) {
		job_errorf(ctx, "collect: min_sketches, min_paintings >= 0 and max_items >= 1 required");
		job_no_retry(ctx);
		return AT_EINVAL;
	}
	snprintf(job, sizeof job, "%" PRId64, job_id(ctx));
	snprintf(runs, sizeof runs, "%lld", (long long)json_integer_value(run));

	/* The per-job lock is a session lock taken before BEGIN: the snapshot of
	 * a REPEATABLE READ transaction starts at its first statement, so it must
	 * come after the wait, or it would miss a dataset an earlier attempt
	 * committed meanwhile. */
	const char *vj[1] = {job};
	if ((rc = db_exec(c, "SELECT pg_advisory_lock(hashtextextended('atelier.collect.' || $1, 0))", 1, vj, 0, &r,
			  why, sizeof why)) < 0)
		goto out;
	locked = 1;
	PQclear(r);
	/* One snapshot for every read, so the counts, ids and hashes agree. */
	if ((rc = db_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, 0, &r, why, sizeof why)) < 0)
		goto out;
	in_tx = 1;
	PQclear(r);
	if ((rc = db_exec(c,
			  "SELECT id, manifest_sha256, sketches, paintings, params::text FROM datasets"
			  " WHERE params ? 'job' AND (params->>'job')::bigint = $1::bigint",
			  1, vj, 0, &r, why, sizeof why)) < 0)
		goto out;
	if (PQntuples(r) == 1) {
		log_info("collect: job %s already froze dataset %s; returning it", job, PQgetvalue(r, 0, 0));
		job_set_result(ctx, result_of(r, 0));
		PQclear(r);
		rc = 0;
		goto out;
	}
	PQclear(r);

	if ((rc = read_members(c, "train", max_items, &train, why, sizeof why)) < 0 ||
	    (rc = read_members(c, "holdout", max_items, &hold, why, sizeof why)) < 0)
		goto out;
	if (train.sketches < min_s || train.paintings < min_p) {
		snprintf(why, sizeof why,
			 "collect: not enough training data: %d sketches (min_sketches %lld), %d paintings "
			 "(min_paintings %lld)",
			 train.sketches, min_s, train.paintings, min_p);
		job_no_retry(ctx);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}

	json_t *pj = json_pack("{s:I, s:s?, s:I, s:I, s:I, s:s, s:i, s:i, s:s}", "job", (json_int_t)job_id(ctx),
			       "stage", stage, "min_sketches", (json_int_t)min_s, "min_paintings", (json_int_t)min_p,
			       "max_items", (json_int_t)max_items, "order", "newest first (images.id descending)",
			       "holdout_sketches", hold.sketches, "holdout_paintings", hold.paintings,
			       "holdout_manifest_sha256", hold.manifest);
	pjson = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
	json_decref(pj);
	train_ids = id_array(&train);
	hold_ids = id_array(&hold);
	if (!pjson || !train_ids || !hold_ids) {
		rc = AT_ENOMEM;
		goto out;
	}
	char ns[16], np[16];
	snprintf(ns, sizeof ns, "%d", train.sketches);
	snprintf(np, sizeof np, "%d", train.paintings);
	const char *vi[5] = {json_is_integer(run) ? runs : NULL, train.manifest, ns, np, pjson};
	if ((rc = db_exec(c,
			  "INSERT INTO datasets (run_id, manifest_sha256, sketches, paintings, params)"
			  " VALUES ($1, $2, $3, $4, $5::jsonb)"
			  " RETURNING id, manifest_sha256, sketches, paintings, params::text",
			  5, vi, 0, &r, why, sizeof why)) < 0)
		goto out;
	json_t *res = result_of(r, 0);
	char ds[32];
	snprintf(ds, sizeof ds, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	const char *vm[2] = {ds, train_ids};
	if ((rc = db_exec(c, "INSERT INTO dataset_members (dataset_id, image_id) SELECT $1, unnest($2::bigint[])", 2,
			  vm, 0, &r, why, sizeof why)) < 0) {
		json_decref(res);
		goto out;
	}
	PQclear(r);
	const char *vh[2] = {ds, hold_ids};
	if ((rc = db_exec(c, "INSERT INTO dataset_holdout (dataset_id, image_id) SELECT $1, unnest($2::bigint[])", 2,
			  vh, 0, &r, why, sizeof why)) < 0) {
		json_decref(res);
		goto out;
	}
	PQclear(r);
	if ((rc = db_exec(c, "COMMIT", 0, NULL, 0, &r, why, sizeof why)) < 0) {
		json_decref(res);
		goto out;
	}
	in_tx = 0;
	PQclear(r);
	log_info("collect: job %s froze dataset %s: %d sketches, %d paintings, holdout %d + %d, manifest %s", job, ds,
		 train.sketches, train.paintings, hold.sketches, hold.paintings, train.manifest);
	job_set_result(ctx, res);
out:
	if (in_tx) {
		PGresult *rb = PQexec(c, rc < 0 ? "ROLLBACK" : "COMMIT");
		PQclear(rb);
	}
	if (locked) {
		const char *vu[1] = {job};
		PGresult *ru = PQexecParams(c, "SELECT pg_advisory_unlock(hashtextextended('atelier.collect.' || $1, 0))",
					    1, NULL, vu, NULL, NULL, 0);
		PQclear(ru);
	}
	if (rc < 0)
		job_errorf(ctx, "%s", why[0] ? why : at_strerror(rc));
	free(pjson);
	free(train_ids);
	free(hold_ids);
	frozen_free(&train);
	frozen_free(&hold);
	return rc;
}
