/*
 * jobs_collect.c — the collect stage: freeze a dataset.
 *
 * One REPEATABLE READ transaction on the worker's connection reads the
 * training members and the holdout (accepted images of split 'holdout',
 * newest first, at most max_items of each domain) and writes datasets +
 * dataset_members (the training set: lineage) + dataset_holdout (the frozen
 * evaluation set). Holdout, rejected and deleted images never enter the
 * training set. The manifest hash is dataset_manifest_sha256() over the
 * training members.
 *
 * Which training images (docs/training.md, "collect"):
 *   replay 0, or no earlier dataset of this pipeline: the newest max_items
 *     accepted training images of each domain;
 *   replay > 0 after that: the images no dataset of this pipeline held yet
 *     (new, newest first, at most max_items), plus dataset_replay_count() of
 *     those some dataset of it held, smallest sha256 first (a reservoir by
 *     content hash: the same data gives the same sample, and a member stays
 *     in it until a smaller hash joins the pool). With nothing new, the
 *     newest dataset's members that are still accepted.
 *
 * Reuse and skip (docs/training.md, "Caching and skipping"): when the frozen
 * members and holdout equal those of this pipeline's newest dataset, that
 * dataset is returned instead of a copy with another id, so the stages after
 * collect see equal inputs and the step cache can serve them. When they
 * equal what the last succeeded run of the same pipeline version froze, the
 * result says "skip" and the run ends as 'skipped' (sql/008_step_cache.sql).
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
#include "params.h"

static const char *const domains[] = {"sketch", "painting"};

struct frozen {
	struct manifest_entry *e;
	size_t n;
	int count[2]; /* per domain: sketches, paintings */
	char manifest[65];
};

static void frozen_free(struct frozen *f) { free(f->e); }

/* Appends the rows (id, sha hex) of one query, all of domain d, to f. */
static int append_rows(PGconn *c, const char *sql, int nv, const char *const *v, int d, struct frozen *f, int *added,
		       char *why, size_t whylen)
{
	PGresult *r;
	int rc = dataset_db_exec(c, sql, nv, v, 0, &r, why, whylen);
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
	f->count[d] += n;
	if (added)
		*added = n;
	PQclear(r);
	return 0;
}

/* The newest max_items accepted images of a split, per domain. */
static int read_newest(PGconn *c, const char *split, long long max_items, struct frozen *f, char *why, size_t whylen)
{
	char lim[32];
	snprintf(lim, sizeof lim, "%lld", max_items);
	for (int d = 0; d < 2; d++) {
		const char *v[3] = {domains[d], split, lim};
		int rc = append_rows(
			c,
			"SELECT id, encode(sha256, 'hex') FROM images"
			" WHERE status = 'accepted' AND domain = $1 AND split = $2 ORDER BY id DESC LIMIT $3",
			3, v, d, f, NULL, why, whylen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* "in some dataset this pipeline froze" ($2 = the pipeline) */
#define SEEN_BY_PIPELINE                                                                 \
	"EXISTS (SELECT 1 FROM dataset_members m JOIN datasets d ON d.id = m.dataset_id" \
	" WHERE m.image_id = i.id AND d.pipeline = $2)"

/*
 * Accepted training images of domain d that some dataset of the pipeline
 * held (seen: replay candidates, a stable order by content hash) or that none
 * held (new: the newest first), at most limit of them.
 */
static int append_by_seen(PGconn *c, const char *pipeline, int d, int seen, long long limit, struct frozen *f,
			  int *added, char *why, size_t whylen)
{
	static const char *const sql[2] = {
		"SELECT i.id, encode(i.sha256, 'hex') FROM images i WHERE i.status = 'accepted'"
		" AND i.domain = $1 AND i.split = 'train' AND NOT " SEEN_BY_PIPELINE " ORDER BY i.id DESC LIMIT $3",
		"SELECT i.id, encode(i.sha256, 'hex') FROM images i WHERE i.status = 'accepted'"
		" AND i.domain = $1 AND i.split = 'train' AND " SEEN_BY_PIPELINE " ORDER BY i.sha256 LIMIT $3",
	};
	char lim[32];
	snprintf(lim, sizeof lim, "%lld", limit);
	const char *v[3] = {domains[d], pipeline, lim};
	return append_rows(c, sql[seen ? 1 : 0], 3, v, d, f, added, why, whylen);
}

/* replay > 0 with an earlier dataset: new images plus a replayed share. */
static int read_replay(PGconn *c, const char *pipeline, const char *prev_id, double replay, long long min_n[2],
		       long long max_items, struct frozen *f, int n_new[2], int n_replayed[2], char *why, size_t whylen)
{
	int rc;
	for (int d = 0; d < 2; d++)
		if ((rc = append_by_seen(c, pipeline, d, 0, max_items, f, &n_new[d], why, whylen)) < 0)
			return rc;
	if (n_new[0] + n_new[1] == 0) {
		/* Nothing new: the newest dataset again, less what was withdrawn since. */
		for (int d = 0; d < 2; d++) {
			const char *v[2] = {domains[d], prev_id};
			if ((rc = append_rows(
				     c,
				     "SELECT i.id, encode(i.sha256, 'hex') FROM dataset_members m JOIN images i"
				     " ON i.id = m.image_id WHERE m.dataset_id = $2::bigint AND i.domain = $1"
				     " AND i.status = 'accepted' AND i.split = 'train'",
				     2, v, d, f, &n_replayed[d], why, whylen)) < 0)
				return rc;
		}
		return 0;
	}
	for (int d = 0; d < 2; d++)
		if ((rc = append_by_seen(c, pipeline, d, 1, dataset_replay_count(n_new[d], replay, min_n[d], max_items),
					 f, &n_replayed[d], why, whylen)) < 0)
			return rc;
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

/* replay 0: how many of the members no dataset of the pipeline held yet. */
static int count_new(PGconn *c, const char *pipeline, const struct frozen *f, int n_new[2], char *why, size_t whylen)
{
	n_new[0] = f->count[0];
	n_new[1] = f->count[1];
	if (!pipeline)
		return 0;
	char *ids = id_array(f);
	if (!ids)
		return AT_ENOMEM;
	const char *v[2] = {ids, pipeline};
	PGresult *r;
	int rc = dataset_db_exec(
		c,
		"SELECT count(*) FILTER (WHERE i.domain = 'sketch'), count(*) FILTER (WHERE i.domain = 'painting')"
		" FROM images i WHERE i.id = ANY ($1::bigint[]) AND NOT " SEEN_BY_PIPELINE,
		2, v, 0, &r, why, whylen);
	free(ids);
	if (rc < 0)
		return rc;
	n_new[0] = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	n_new[1] = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
	PQclear(r);
	return 0;
}

#define DATASET_COLUMNS "id, manifest_sha256, sketches, paintings, params::text"

static json_t *result_of(PGresult *r, int row)
{
	/* columns: DATASET_COLUMNS */
	json_error_t jerr;
	json_t *params = json_loads(PQgetvalue(r, row, 4), 0, &jerr);
	json_t *res = json_pack("{s:I, s:s, s:I, s:I, s:{s:O?, s:O?, s:O?}, s:O?, s:O?, s:O?, s:O?}", "dataset",
				(json_int_t)strtoll(PQgetvalue(r, row, 0), NULL, 10), "manifest_sha256",
				PQgetvalue(r, row, 1), "sketches", (json_int_t)strtoll(PQgetvalue(r, row, 2), NULL, 10),
				"paintings", (json_int_t)strtoll(PQgetvalue(r, row, 3), NULL, 10), "holdout",
				"sketches", json_object_get(params, "holdout_sketches"), "paintings",
				json_object_get(params, "holdout_paintings"), "manifest_sha256",
				json_object_get(params, "holdout_manifest_sha256"), "order",
				json_object_get(params, "order"), "replay", json_object_get(params, "replay"), "new",
				json_object_get(params, "new"), "replayed", json_object_get(params, "replayed"));
	json_decref(params);
	return res;
}

/* The last succeeded run of this pipeline froze the same data with the same
 * pipeline version: say so in the result (the run then ends as skipped). */
static int mark_skip(PGconn *c, const char *pipeline, json_t *version, json_t *res, char *why, size_t whylen)
{
	const char *v[1] = {pipeline};
	PGresult *r;
	int rc = dataset_db_exec(c,
				 "SELECT r.id, r.pipeline_version_id, j.result->>'manifest_sha256',"
				 " j.result->'holdout'->>'manifest_sha256' FROM runs r JOIN jobs j ON j.run_id = r.id"
				 " AND j.kind = 'collect' AND j.state = 'succeeded'"
				 " WHERE r.pipeline = $1 AND r.state = 'succeeded' ORDER BY r.id DESC, j.id LIMIT 1",
				 1, v, 0, &r, why, whylen);
	if (rc < 0)
		return rc;
	const char *hold = json_string_value(json_object_get(json_object_get(res, "holdout"), "manifest_sha256"));
	const char *man = json_string_value(json_object_get(res, "manifest_sha256"));
	if (PQntuples(r) == 1 && json_is_integer(version) &&
	    strtoll(PQgetvalue(r, 0, 1), NULL, 10) == (long long)json_integer_value(version) && man &&
	    strcmp(PQgetvalue(r, 0, 2), man) == 0 && hold && strcmp(PQgetvalue(r, 0, 3), hold) == 0) {
		char reason[256];
		snprintf(reason, sizeof reason, "no new data: dataset %lld (manifest %.12s) is what run %s trained on",
			 (long long)json_integer_value(json_object_get(res, "dataset")), man, PQgetvalue(r, 0, 0));
		json_object_set_new(res, "skip", json_string(reason));
	}
	PQclear(r);
	return 0;
}

int job_collect(struct job_ctx *ctx)
{
	json_t *payload = job_payload(ctx);
	struct params_reader pr;
	struct collect_params cp;
	params_reader_init(&pr, "collect", payload);
	int prc = collect_params_read(&pr, &cp);
	long long min_n[2] = {cp.min_sketches, cp.min_paintings};
	long long max_items = cp.max_items;
	double replay = cp.replay;
	json_t *run = json_object_get(payload, "run");
	const char *stage = json_string_value(json_object_get(payload, "stage"));
	/* NULL for a collect enqueued by hand: no reuse, replay or skip */
	const char *pipeline = json_string_value(json_object_get(payload, "pipeline"));
	PGconn *c = job_db(ctx);
	struct frozen train = {0}, hold = {0};
	char why[512] = "", job[32], runs[32], prev_id[32] = "";
	char *train_ids = NULL, *hold_ids = NULL, *pjson = NULL;
	PGresult *r = NULL, *prev = NULL;
	json_t *res = NULL;
	int rc, in_tx = 0, locked = 0, n_new[2] = {0, 0}, n_replayed[2] = {0, 0};

	if (prc < 0) {
		job_errorf(ctx, "%s", pr.why);
		job_no_retry(ctx);
		return prc;
	}
	if (min_n[0] < 0 || min_n[1] < 0 || max_items < 1 || !(replay >= 0 && replay <= 1)) {
		job_errorf(ctx,
			   "collect: min_sketches, min_paintings >= 0, max_items >= 1 and replay in 0..1 required");
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
	if ((rc = dataset_db_exec(c, "SELECT pg_advisory_lock(hashtextextended('atelier.collect.' || $1, 0))", 1, vj, 0,
				  &r, why, sizeof why)) < 0)
		goto out;
	locked = 1;
	PQclear(r);
	/* One snapshot for every read, so the counts, ids and hashes agree. */
	if ((rc = dataset_db_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, 0, &r, why, sizeof why)) < 0)
		goto out;
	in_tx = 1;
	PQclear(r);
	if ((rc = dataset_db_exec(c,
				  "SELECT " DATASET_COLUMNS " FROM datasets"
				  " WHERE params ? 'job' AND (params->>'job')::bigint = $1::bigint",
				  1, vj, 0, &r, why, sizeof why)) < 0)
		goto out;
	if (PQntuples(r) == 1) {
		log_info("collect: job %s already froze dataset %s; returning it", job, PQgetvalue(r, 0, 0));
		res = result_of(r, 0);
		PQclear(r);
		goto decided;
	}
	PQclear(r);

	if (pipeline) {
		const char *vp[1] = {pipeline};
		if ((rc = dataset_db_exec(c,
					  "SELECT " DATASET_COLUMNS ", params->>'holdout_manifest_sha256' FROM datasets"
					  " WHERE pipeline = $1 ORDER BY id DESC LIMIT 1",
					  1, vp, 0, &prev, why, sizeof why)) < 0)
			goto out;
		if (PQntuples(prev) == 1)
			snprintf(prev_id, sizeof prev_id, "%s", PQgetvalue(prev, 0, 0));
	}
	if ((rc = read_newest(c, "holdout", max_items, &hold, why, sizeof why)) < 0)
		goto out;
	dataset_manifest_sha256(hold.e, hold.n, hold.manifest);
	if (replay > 0 && prev_id[0])
		rc = read_replay(c, pipeline, prev_id, replay, min_n, max_items, &train, n_new, n_replayed, why,
				 sizeof why);
	else if ((rc = read_newest(c, "train", max_items, &train, why, sizeof why)) == 0 &&
		 (rc = count_new(c, pipeline, &train, n_new, why, sizeof why)) == 0) {
		/* replay 0 keeps every member that fits: the old ones count as replayed */
		n_replayed[0] = train.count[0] - n_new[0];
		n_replayed[1] = train.count[1] - n_new[1];
	}
	if (rc < 0)
		goto out;
	dataset_manifest_sha256(train.e, train.n, train.manifest);
	if (train.count[0] < min_n[0] || train.count[1] < min_n[1]) {
		snprintf(why, sizeof why,
			 "collect: not enough training data: %d sketches (min_sketches %lld), %d paintings "
			 "(min_paintings %lld)",
			 train.count[0], min_n[0], train.count[1], min_n[1]);
		job_no_retry(ctx);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}

	if (prev_id[0] && strcmp(PQgetvalue(prev, 0, 1), train.manifest) == 0 &&
	    strcmp(PQgetvalue(prev, 0, 5), hold.manifest) == 0) {
		log_info("collect: job %s froze the same members and holdout as dataset %s; reusing it", job, prev_id);
		res = result_of(prev, 0);
		goto decided;
	}

	json_t *pj = json_pack("{s:I, s:s?, s:s?, s:I, s:I, s:I, s:f, s:s, s:i, s:i, s:s, s:{s:i, s:i}, s:{s:i, s:i}}",
			       "job", (json_int_t)job_id(ctx), "stage", stage, "pipeline", pipeline, "min_sketches",
			       (json_int_t)min_n[0], "min_paintings", (json_int_t)min_n[1], "max_items",
			       (json_int_t)max_items, "replay", replay, "order",
			       replay > 0 && prev_id[0] ? "new newest first, then replayed by sha256"
							: "newest first (images.id descending)",
			       "holdout_sketches", hold.count[0], "holdout_paintings", hold.count[1],
			       "holdout_manifest_sha256", hold.manifest, "new", "sketches", n_new[0], "paintings",
			       n_new[1], "replayed", "sketches", n_replayed[0], "paintings", n_replayed[1]);
	pjson = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
	json_decref(pj);
	train_ids = id_array(&train);
	hold_ids = id_array(&hold);
	if (!pjson || !train_ids || !hold_ids) {
		rc = AT_ENOMEM;
		goto out;
	}
	char ns[16], np[16];
	snprintf(ns, sizeof ns, "%d", train.count[0]);
	snprintf(np, sizeof np, "%d", train.count[1]);
	const char *vi[6] = {json_is_integer(run) ? runs : NULL, train.manifest, ns, np, pjson, pipeline};
	/* The watermark: the newest accepted training sketch this snapshot saw
	 * (the new_sketches trigger counts the ones above it). */
	if ((rc = dataset_db_exec(
		     c,
		     "INSERT INTO datasets (run_id, manifest_sha256, sketches, paintings, params, pipeline,"
		     " sketch_watermark) VALUES ($1, $2, $3, $4, $5::jsonb, $6, (SELECT coalesce(max(id), 0) FROM"
		     " images WHERE domain = 'sketch' AND split = 'train' AND status = 'accepted'))"
		     " RETURNING " DATASET_COLUMNS,
		     6, vi, 0, &r, why, sizeof why)) < 0)
		goto out;
	res = result_of(r, 0);
	char ds[32];
	snprintf(ds, sizeof ds, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	const char *vm[2] = {ds, train_ids};
	if ((rc = dataset_db_exec(c,
				  "INSERT INTO dataset_members (dataset_id, image_id) SELECT $1, unnest($2::bigint[])",
				  2, vm, 0, &r, why, sizeof why)) < 0)
		goto out;
	PQclear(r);
	const char *vh[2] = {ds, hold_ids};
	if ((rc = dataset_db_exec(c,
				  "INSERT INTO dataset_holdout (dataset_id, image_id) SELECT $1, unnest($2::bigint[])",
				  2, vh, 0, &r, why, sizeof why)) < 0)
		goto out;
	PQclear(r);
	log_info("collect: job %s froze dataset %s: %d sketches, %d paintings (new %d + %d, replayed %d + %d),"
		 " holdout %d + %d, manifest %s",
		 job, ds, train.count[0], train.count[1], n_new[0], n_new[1], n_replayed[0], n_replayed[1],
		 hold.count[0], hold.count[1], train.manifest);

decided:
	if (!res) {
		rc = AT_ENOMEM;
		goto out;
	}
	if (pipeline &&
	    (rc = mark_skip(c, pipeline, json_object_get(payload, "pipeline_version_id"), res, why, sizeof why)) < 0)
		goto out;
	if ((rc = dataset_db_exec(c, "COMMIT", 0, NULL, 0, &r, why, sizeof why)) < 0)
		goto out;
	in_tx = 0;
	PQclear(r);
	if (json_object_get(res, "skip"))
		log_info("collect: job %s: %s", job, json_string_value(json_object_get(res, "skip")));
	job_set_result(ctx, res);
	res = NULL;
out:
	if (in_tx) {
		PGresult *rb = PQexec(c, rc < 0 ? "ROLLBACK" : "COMMIT");
		PQclear(rb);
	}
	if (locked) {
		const char *vu[1] = {job};
		PGresult *ru =
			PQexecParams(c, "SELECT pg_advisory_unlock(hashtextextended('atelier.collect.' || $1, 0))", 1,
				     NULL, vu, NULL, NULL, 0);
		PQclear(ru);
	}
	if (rc < 0)
		job_errorf(ctx, "%s", why[0] ? why : at_strerror(rc));
	json_decref(res);
	PQclear(prev);
	free(pjson);
	free(train_ids);
	free(hold_ids);
	frozen_free(&train);
	frozen_free(&hold);
	return rc;
}
