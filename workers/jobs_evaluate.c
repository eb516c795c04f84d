/*
 * jobs_evaluate.c — the evaluate stage: score the candidate (the train
 * stage's version) and the champion (the production version, if any) on the
 * same frozen holdout shard, apply the pipeline's gate, record the verdict.
 *
 * Scores (docs/training.md), for the first `samples` holdout sketches, each
 * stylized with `styles` seeded style codes (AM_STYLE_SEED 0..styles-1) at
 * the shard's size:
 *   edge_f1      mean am_edge_f1(sketch, output, tol 2): content preservation
 *   realism_mmd  am_realism_mmd(outputs, real holdout paintings): MMD^2 on the
 *                shim's fixed random conv features — nothing is downloaded
 *   realism_acc  eval_realism_acc: 1-NN two-sample accuracy, 0.5 = as real
 *   diversity    mean over sketches of am_diversity(its outputs)
 *   recon_l1     mean am_model_recon_error over the real holdout paintings
 * A few outputs (and their sketches) go to the artifact store as PNG.
 *
 * The verdict ({passed, reasons[], failed[], rules[], candidate, champion})
 * is written to the candidate's model_versions row (verdict, and metrics for
 * the gallery) before the job reports, so it survives a failing gate: a
 * failing gate fails the job without retry, with the failed reasons as its
 * error, and the run stops before promote.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "atelier_model.h"
#include "dataset.h"
#include "evaluation.h"
#include "image.h"
#include "job.h"
#include "log.h"

#define EDGE_TOL 2
#define SAMPLE_SKETCHES 2
#define SAMPLE_STYLES 2
#define MAX_REAL 256

struct eval {
	struct job_ctx *ctx;
	struct artifact_store *store;
	am_status_t *st;
	const struct shard *hold;
	int n_sketches, styles, n_real;
	uint8_t *gen, *real;
	char why[768];
};

/* Loads an export from the store into a model. */
static am_model *load_model(struct eval *e, const char *sha, const char *dir, const char *name)
{
	char path[160];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int rc = artifact_get_file(e->store, sha, path);
	if (rc < 0) {
		snprintf(e->why, sizeof e->why, "evaluate: model %.12s: %s", sha, at_strerror(rc));
		return NULL;
	}
	am_model *m = am_model_load(path, getenv("ATELIER_DEVICE"), e->st);
	unlink(path);
	if (!m)
		snprintf(e->why, sizeof e->why, "evaluate: loading model %.12s: %s", sha, am_status_message(e->st));
	return m;
}

static int put_png(struct eval *e, const uint8_t *pix, int ch, char sha[65])
{
	uint8_t *png = NULL;
	size_t len = 0;
	int S = e->hold->size;
	int rc = image_encode_png(pix, S, S, ch, ch == 1 ? IMAGE_PNG_FAST : 1, &png, &len);
	if (rc == 0)
		rc = artifact_put_bytes(e->store, png, len, sha);
	free(png);
	return rc;
}

/* Every score of one model; *metrics and *samples are new objects. */
static int score(struct eval *e, am_model *m, json_t **metrics, json_t **samples)
{
	int S = e->hold->size;
	size_t ss = (size_t)S * S, img = ss * 3;
	int n_gen = e->n_sketches * e->styles;
	double f1 = 0, div = 0, recon = 0;
	int rc;
	*metrics = *samples = NULL;
	for (int i = 0; i < e->n_sketches; i++) {
		const uint8_t *gray = e->hold->sketch + (size_t)i * ss;
		for (int k = 0; k < e->styles; k++) {
			if (job_cancelled(e->ctx))
				return AT_ECANCELLED;
			am_style style = {.kind = AM_STYLE_SEED, .seed = (uint64_t)k};
			uint8_t *out = e->gen + ((size_t)i * e->styles + k) * img;
			if ((rc = am_model_stylize(m, gray, S, S, &style, out, S, S, e->st)) < 0) {
				snprintf(e->why, sizeof e->why, "evaluate: stylize: %s", am_status_message(e->st));
				return rc;
			}
			double f = am_edge_f1(gray, out, S, S, EDGE_TOL);
			f1 += f < 0 ? 0 : f;
		}
		if (e->styles >= 2)
			div += am_diversity(e->gen + (size_t)i * e->styles * img, e->styles, S, S);
	}
	f1 /= n_gen;
	div /= e->n_sketches;
	for (int j = 0; j < e->n_real; j++) {
		double err = 0;
		if ((rc = am_model_recon_error(m, e->real + (size_t)j * img, S, S, &err, e->st)) < 0) {
			snprintf(e->why, sizeof e->why, "evaluate: recon: %s", am_status_message(e->st));
			return rc;
		}
		recon += err;
	}
	recon /= e->n_real;
	double mmd = NAN;
	if (n_gen >= 2 && (rc = am_realism_mmd(e->gen, n_gen, e->real, e->n_real, S, S, &mmd, e->st)) < 0) {
		snprintf(e->why, sizeof e->why, "evaluate: mmd: %s", am_status_message(e->st));
		return rc;
	}
	double acc = eval_realism_acc(e->gen, n_gen, e->real, e->n_real, S, S);
	*metrics = json_pack("{s:f, s:f, s:f, s:f, s:o}", "edge_f1", f1, "diversity", div, "recon_l1", recon,
			     "realism_acc", acc, "realism_mmd", isfinite(mmd) ? json_real(mmd) : json_null());
	*samples = json_array();
	if (!*metrics || !*samples)
		return AT_ENOMEM;
	for (int i = 0; i < e->n_sketches && i < SAMPLE_SKETCHES; i++) {
		char ssha[65];
		if ((rc = put_png(e, e->hold->sketch + (size_t)i * ss, 1, ssha)) < 0)
			return rc;
		for (int k = 0; k < e->styles && k < SAMPLE_STYLES; k++) {
			char osha[65];
			if ((rc = put_png(e, e->gen + ((size_t)i * e->styles + k) * img, 3, osha)) < 0)
				return rc;
			json_array_append_new(*samples, json_pack("{s:s, s:i, s:s, s:I}", "sketch", ssha, "style", k,
								  "output", osha, "image_id",
								  (json_int_t)e->hold->sketch_ids[i]));
		}
	}
	return 0;
}

/* ", "-joined strings of a JSON array, into buf. */
static void join(json_t *arr, char *buf, size_t len)
{
	size_t i, off = 0;
	json_t *s;
	buf[0] = 0;
	json_array_foreach(arr, i, s)
	{
		int k = snprintf(buf + off, len - off, "%s%s", i ? "; " : "", json_string_value(s));
		if (k < 0 || (size_t)k >= len - off)
			break;
		off += (size_t)k;
	}
}

int job_evaluate(struct job_ctx *ctx)
{
	json_t *payload = job_payload(ctx), *params = dataset_params(payload);
	int samples = (int)dataset_param_int(params, "samples", 8);
	int styles = (int)dataset_param_int(params, "styles", 4);
	const char *model = json_string_value(json_object_get(payload, "model"));
	json_t *cand_sha = dataset_input(payload, "train", "sha256");
	json_t *cand_vid = dataset_input(payload, "train", "version_id");
	json_t *cand_ver = dataset_input(payload, "train", "version");
	json_t *hold_sha = dataset_input(payload, "prepare", "holdout_shard");
	json_t *gate = NULL; /* owned */
	PGconn *c = job_db(ctx);
	struct eval e;
	struct shard hold;
	am_model *cand = NULL, *champ = NULL;
	json_t *cm = NULL, *cs = NULL, *hm = NULL, *hs = NULL, *verdict = NULL;
	char dir[512] = "", path[600];
	int rc = 0;

	memset(&e, 0, sizeof e);
	e.ctx = ctx;
	shard_init(&hold, 0);
	if (!model || !json_is_string(cand_sha) || !json_is_integer(cand_vid) || !json_is_string(hold_sha) ||
	    samples < 1 || styles < 1 || styles > 64) {
		snprintf(e.why, sizeof e.why,
			 "evaluate: needs payload.model, the train stage's sha256 and version_id, the prepare "
			 "stage's holdout_shard, samples >= 1, styles 1..64");
		job_no_retry(ctx);
		rc = AT_EINVAL;
		goto out;
	}
	gate = json_object_get(payload, "gate");
	gate = gate ? json_incref(gate) : json_array();
	if (!(e.st = am_status_new()) || !gate) {
		rc = AT_ENOMEM;
		goto out;
	}
	if ((rc = job_scratch_dir("eval", dir, sizeof dir)) < 0)
		goto out;
	if ((rc = artifact_store_open(job_artifacts_uri(ctx), &e.store)) < 0) {
		snprintf(e.why, sizeof e.why, "evaluate: artifact store: %s", at_strerror(rc));
		goto out;
	}
	snprintf(path, sizeof path, "%s/holdout", dir);
	if ((rc = artifact_get_file(e.store, json_string_value(hold_sha), path)) < 0 ||
	    (rc = shard_read_file(path, &hold)) < 0) {
		snprintf(e.why, sizeof e.why, "evaluate: holdout shard %.12s: %s", json_string_value(hold_sha),
			 at_strerror(rc));
		goto out;
	}
	unlink(path);
	if (hold.n_sketches < 1 || hold.n_paintings < 2) {
		snprintf(e.why, sizeof e.why,
			 "evaluate: the holdout set is too small: %d sketches (need 1), %d paintings (need 2)",
			 hold.n_sketches, hold.n_paintings);
		job_no_retry(ctx);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}
	e.hold = &hold;
	e.n_sketches = samples < hold.n_sketches ? samples : hold.n_sketches;
	e.styles = styles;
	e.n_real = hold.n_paintings < MAX_REAL ? hold.n_paintings : MAX_REAL;
	size_t img = (size_t)hold.size * hold.size * 3;
	e.gen = malloc((size_t)e.n_sketches * styles * img);
	e.real = malloc((size_t)e.n_real * img);
	if (!e.gen || !e.real) {
		rc = AT_ENOMEM;
		goto out;
	}
	for (int j = 0; j < e.n_real; j++)
		shard_painting_rgb(&hold, j, e.real + (size_t)j * img);

	/* ---- candidate, then champion ---- */
	if (!(cand = load_model(&e, json_string_value(cand_sha), dir, "candidate"))) {
		rc = AT_ECORRUPT;
		goto out;
	}
	if ((rc = score(&e, cand, &cm, &cs)) < 0)
		goto out;
	job_progress(ctx, 0.5, "candidate scored", -1);
	int found = 0, champ_ver = 0;
	int64_t champ_vid = 0;
	char champ_sha[65];
	if ((rc = db_production(c, model, &found, &champ_vid, &champ_ver, champ_sha, e.why, sizeof e.why)) < 0)
		goto out;
	if (found) {
		if (!(champ = load_model(&e, champ_sha, dir, "champion"))) {
			rc = AT_ECORRUPT;
			goto out;
		}
		if ((rc = score(&e, champ, &hm, &hs)) < 0)
			goto out;
	}
	job_progress(ctx, 0.9, "applying the gate", -1);

	/* ---- verdict ---- */
	if (!(verdict = gate_apply(gate, cm, hm))) {
		rc = AT_ENOMEM;
		goto out;
	}
	json_object_set(verdict, "candidate", cm);
	json_object_set(verdict, "champion", hm ? hm : json_null());
	json_object_set_new(verdict, "champion_version", found ? json_integer(champ_ver) : json_null());
	json_object_set_new(verdict, "holdout_shard", json_string(json_string_value(hold_sha)));
	json_object_set_new(verdict, "job", json_integer(job_id(ctx)));
	int passed = json_is_true(json_object_get(verdict, "passed"));
	json_t *vm = json_pack("{s:O, s:O, s:{s:I, s:s, s:i, s:i, s:o}}", "holdout", cm, "samples", cs, "evaluation",
			       "job", (json_int_t)job_id(ctx), "holdout_shard", json_string_value(hold_sha), "sketches",
			       e.n_sketches, "styles", styles, "champion_version",
			       found ? json_integer(champ_ver) : json_null());
	char *vm_text = vm ? json_dumps(vm, JSON_COMPACT) : NULL, *verdict_text = json_dumps(verdict, JSON_COMPACT);
	json_decref(vm);
	char vid[32];
	snprintf(vid, sizeof vid, "%lld", (long long)json_integer_value(cand_vid));
	const char *v[3] = {vid, vm_text, verdict_text};
	PGresult *r = NULL;
	if (!vm_text || !verdict_text)
		rc = AT_ENOMEM;
	else
		rc = db_exec(c, "UPDATE model_versions SET metrics = metrics || $2::jsonb, verdict = $3::jsonb WHERE id = $1",
			     3, v, 0, &r, e.why, sizeof e.why);
	free(vm_text);
	free(verdict_text);
	if (rc < 0)
		goto out;
	PQclear(r);

	json_t *res = json_pack("{s:b, s:O, s:O, s:{s:O?, s:O, s:O, s:O}, s:o, s:{s:O, s:O?}}", "passed", passed,
				"reasons", json_object_get(verdict, "reasons"), "verdict", verdict, "candidate",
				"version", cand_ver, "version_id", cand_vid, "sha256", cand_sha, "metrics", cm,
				"champion",
				found ? json_pack("{s:i, s:I, s:s, s:O}", "version", champ_ver, "version_id",
						  (json_int_t)champ_vid, "sha256", champ_sha, "metrics", hm)
				      : json_null(),
				"samples", "candidate", cs, "champion", hs);
	job_set_result(ctx, res);
	if (!passed) {
		char reasons[700];
		join(json_object_get(verdict, "failed"), reasons, sizeof reasons);
		snprintf(e.why, sizeof e.why, "gate failed: %s", reasons);
		log_info("evaluate: %s v%lld: %s", model, (long long)json_integer_value(cand_ver), e.why);
		job_no_retry(ctx);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}
	log_info("evaluate: %s v%lld passed the gate (champion %s)", model, (long long)json_integer_value(cand_ver),
		 found ? "present" : "none");
	rc = 0;
out:
	if (rc < 0)
		job_errorf(ctx, "%s", e.why[0] ? e.why : at_strerror(rc));
	json_decref(gate);
	json_decref(cm);
	json_decref(cs);
	json_decref(hm);
	json_decref(hs);
	json_decref(verdict);
	am_model_free(cand);
	am_model_free(champ);
	am_status_free(e.st);
	free(e.gen);
	free(e.real);
	shard_free(&hold);
	artifact_store_close(e.store);
	if (dir[0]) {
		static const char *const names[] = {"holdout", "candidate", "champion"};
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
			snprintf(path, sizeof path, "%s/%s", dir, names[i]);
			unlink(path);
		}
		rmdir(dir);
	}
	return rc;
}
