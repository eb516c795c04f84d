/*
 * jobs_evaluate.c — the evaluate stage: score the candidate (the train
 * stage's version) and the champion (the production version, if any) on the
 * same frozen holdout shard, overall and per slice, apply the pipeline's
 * gate, record the verdict and the gallery.
 *
 * Inputs (docs/training.md): `samples` holdout sketches, picked round-robin
 * over the slices their images' sources fall in (lib/slice.h) so a small
 * slice gets sketches too, each stylized with `styles` seeded style codes
 * (AM_STYLE_SEED 0..styles-1) at the shard's size. Candidate and champion
 * see exactly the same sketches and style seeds. Scores (direction table in
 * lib/metric.h):
 *   content      mean am_content_chamfer(sketch, output), px, lower better
 *   content_f1   mean am_edge_f1(sketch, output, tol 1)
 *   edge_f1      mean am_edge_f1(sketch, output, tol 2) (saturates; reported)
 *   kid          am_kid(outputs, real holdout paintings) with its interval
 *   diversity    mean over sketches of am_diversity(its outputs), divided by
 *                am_diversity(real holdout paintings)
 *   recon_l1     mean am_model_recon_error over the real holdout paintings
 *                (overall only: it does not depend on the sketches)
 * Every score carries a 90 % bootstrap interval ("intervals"; over sketches,
 * each sketch's styles averaged, since a sketch's outputs are not independent
 * draws; kid's own from am_kid; recon_l1's over paintings), and the verdict's
 * "paired" block gives each change candidate − champion with the interval of
 * the per-sketch differences on the same sketches and styles: whether a
 * difference is more than the holdout's sampling noise.
 * Every scored sketch and output goes to the artifact store as PNG and is
 * listed (artifact_refs makes /v1/artifacts serve them).
 *
 * The verdict ({passed, reasons[], failed[], rules[], candidate, champion})
 * and the gallery (candidate and champion samples) are written to the
 * candidate's model_versions row before the gate decides, so both survive a
 * failing gate: a failing gate fails the job without retry, with the failed
 * reasons as its error, and the run stops before promote.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "atelier_model.h"
#include "buf.h"
#include "dataset.h"
#include "evaluation.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "params.h"
#include "slice.h"

#define CONTENT_F1_TOL 1
#define EDGE_TOL 2
#define MAX_REAL 256
#define MAX_DIV_REAL 64   /* real paintings in the diversity normaliser */
#define MAX_SOURCED 10000 /* holdout sketches whose sources are looked up for the slices */
#define BOOT_REPS 1000
#define BOOT_SEED 0x5eedull

struct eval {
	struct job_ctx *ctx;
	struct artifact_store *store;
	am_status_t *st;
	const struct shard *hold;
	int n_sketches, styles, n_real;
	int *pick;              /* shard index of each scored sketch */
	int *slice;             /* its slice */
	char (*sketch_sha)[65]; /* its PNG in the store */
	uint8_t *gen, *real, *sub;
	double *chamfer, *f1, *f1_2; /* per output */
	double *div;                 /* per sketch, raw */
	double *recon;               /* per real painting */
	double real_div;
	/* The candidate's per-output, per-sketch and per-painting values, kept
	 * for the paired comparison once the champion has overwritten the above. */
	double *c_chamfer, *c_f1, *c_f1_2, *c_div, *c_recon;
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
	am_model *m = am_model_load(path, job_device(e->ctx), e->st);
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
	if (rc < 0)
		snprintf(e->why, sizeof e->why, "evaluate: storing a sample: %s", at_strerror(rc));
	return rc;
}

/* ---- which sketches ---- */

/*
 * Looks up the sources of the first MAX_SOURCED holdout sketches and picks
 * e->n_sketches of them round-robin over the slices (in SLICE_MAP order,
 * each slice's sketches in shard order): a slice of 3 sketches among 900
 * still gets scored. The same pick serves candidate and champion.
 */
static int pick_sketches(struct eval *e, PGconn *c)
{
	const struct shard *h = e->hold;
	int n = h->n_sketches < MAX_SOURCED ? h->n_sketches : MAX_SOURCED;
	int *slice_of = malloc((size_t)n * sizeof *slice_of), *next = NULL;
	struct at_buf ids;
	PGresult *r = NULL;
	int rc;
	at_buf_init(&ids, 0);
	if (!slice_of)
		return AT_ENOMEM;
	rc = at_buf_addstr(&ids, "{");
	for (int i = 0; rc == 0 && i < n; i++)
		rc = at_buf_printf(&ids, "%s%" PRId64, i ? "," : "", h->sketch_ids[i]);
	if (rc == 0)
		rc = at_buf_addstr(&ids, "}");
	if (rc < 0)
		goto out;
	const char *v[1] = {ids.data};
	if ((rc = dataset_db_exec(c,
				  "SELECT u.ord, i.source FROM unnest($1::bigint[]) WITH ORDINALITY u(id, ord) "
				  "LEFT JOIN images i ON i.id = u.id",
				  1, v, 0, &r, e->why, sizeof e->why)) < 0)
		goto out;
	/* an image deleted since (no row) counts as "other" */
	for (int i = 0; i < n; i++)
		slice_of[i] = SLICE_OTHER;
	for (int row = 0; row < PQntuples(r); row++) {
		long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
		if (ord >= 1 && ord <= n && !PQgetisnull(r, row, 1))
			slice_of[ord - 1] = (int)slice_of_source(PQgetvalue(r, row, 1));
	}
	if (!(next = calloc(SLICE_COUNT_, sizeof *next))) {
		rc = AT_ENOMEM;
		goto out;
	}
	int got = 0;
	while (got < e->n_sketches) {
		int progress = 0;
		for (int s = 0; s < SLICE_COUNT_ && got < e->n_sketches; s++) {
			while (next[s] < n && slice_of[next[s]] != s)
				next[s]++;
			if (next[s] < n) {
				e->pick[got] = next[s];
				e->slice[got++] = s;
				next[s]++;
				progress = 1;
			}
		}
		if (!progress)
			break;
	}
	e->n_sketches = got;
	rc = 0;
out:
	PQclear(r);
	at_buf_free(&ids);
	free(slice_of);
	free(next);
	return rc;
}

/* ---- scores ---- */

static json_t *interval_json(const am_interval *iv) { return json_pack("[f, f]", iv->lo, iv->hi); }

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* The mean over sketch i's styles of a per-output array. */
static double sketch_mean(const struct eval *e, const double *per_output, int i)
{
	double sum = 0;
	for (int s = 0; s < e->styles; s++)
		sum += per_output[(size_t)i * e->styles + s];
	return sum / e->styles;
}

/* Sets intervals[name] to the bootstrap interval of the mean of u[0..n). */
static int set_interval(json_t *intervals, const char *name, const double *u, int n)
{
	double lo, hi;
	int rc = eval_boot_mean(u, n, BOOT_REPS, BOOT_SEED, &lo, &hi);
	if (rc < 0)
		return rc;
	return json_object_set_new(intervals, name, json_pack("[f, f]", lo, hi)) == 0 ? 0 : AT_ENOMEM;
}

/*
 * The scores of the picked sketches whose slice is `slice` (-1: all), from
 * the per-output values score() left in e, each with its interval. *out is a
 * new object.
 */
static int metrics_for(struct eval *e, int slice, json_t **out)
{
	int S = e->hold->size, k = 0, rc = 0;
	size_t img = (size_t)S * S * 3;
	/* per scored sketch of the slice: content, content_f1, edge_f1, diversity */
	double *u = malloc((size_t)e->n_sketches * 4 * sizeof *u);
	*out = NULL;
	if (!u)
		return AT_ENOMEM;
	double *u_ch = u, *u_f1 = u + e->n_sketches, *u_f2 = u + 2 * e->n_sketches, *u_div = u + 3 * e->n_sketches;
	for (int i = 0; i < e->n_sketches; i++) {
		if (slice >= 0 && e->slice[i] != slice)
			continue;
		for (int s = 0; s < e->styles; s++) {
			size_t o = (size_t)i * e->styles + s;
			memcpy(e->sub + ((size_t)k * e->styles + s) * img, e->gen + o * img, img);
		}
		u_ch[k] = sketch_mean(e, e->chamfer, i);
		u_f1[k] = sketch_mean(e, e->f1, i);
		u_f2[k] = sketch_mean(e, e->f1_2, i);
		u_div[k] = e->styles < 2 ? 0.0 : e->real_div > 0 ? e->div[i] / e->real_div : NAN;
		k++;
	}
	if (k == 0) {
		free(u);
		return json_is_object(*out = json_pack("{s:i}", "n", 0)) ? 0 : AT_ENOMEM;
	}
	int n_out = k * e->styles;
	double chamfer = 0, f1 = 0, f1_2 = 0, diversity = 0;
	for (int i = 0; i < k; i++) {
		chamfer += u_ch[i] / k;
		f1 += u_f1[i] / k;
		f1_2 += u_f2[i] / k;
		diversity += u_div[i] / k;
	}
	am_interval kid = {NAN, NAN, NAN};
	if (n_out >= 2 && (rc = am_kid(e->sub, n_out, e->real, e->n_real, S, S, &kid, e->st)) < 0) {
		snprintf(e->why, sizeof e->why, "evaluate: kid: %s", am_status_message(e->st));
		free(u);
		return rc;
	}
	json_t *iv = json_pack("{s:o}", "kid", isfinite(kid.value) ? interval_json(&kid) : json_null());
	if (iv && (rc = set_interval(iv, "content", u_ch, k)) == 0 &&
	    (rc = set_interval(iv, "content_f1", u_f1, k)) == 0 && (rc = set_interval(iv, "edge_f1", u_f2, k)) == 0 &&
	    e->styles >= 2 && isfinite(diversity))
		rc = set_interval(iv, "diversity", u_div, k);
	free(u);
	if (!iv || rc < 0) {
		json_decref(iv);
		return rc < 0 ? rc : AT_ENOMEM;
	}
	*out = json_pack("{s:f, s:f, s:f, s:o, s:o, s:i, s:i, s:o}", "content", chamfer, "content_f1", f1, "edge_f1",
			 f1_2, "kid", num_or_null(kid.value), "diversity", num_or_null(diversity), "n", k, "outputs",
			 n_out, "intervals", iv);
	return *out ? 0 : AT_ENOMEM;
}

/*
 * The verdict's "paired" block: for each score, the change candidate −
 * champion and the bootstrap interval of the per-sketch (recon_l1:
 * per-painting) differences, overall. e holds the champion's values, e->c_*
 * the candidate's. NULL on ENOMEM.
 */
static json_t *paired_changes(struct eval *e)
{
	int n = e->n_sketches, m = e->n_real;
	int len = n > m ? n : m;
	double *d = malloc((size_t)len * sizeof *d);
	json_t *out = json_object();
	/* units: sketches, or paintings for recon_l1; 0 skips the row (no
	 * diversity with one style). scale: diversity is relative to real paintings'. */
	int div_units = e->styles >= 2 && e->real_div > 0 ? n : 0;
	struct {
		const char *name;
		const double *cand, *champ;
		int per_output, units;
		double scale;
	} rows[] = {{"content", e->c_chamfer, e->chamfer, 1, n, 1},
		    {"content_f1", e->c_f1, e->f1, 1, n, 1},
		    {"edge_f1", e->c_f1_2, e->f1_2, 1, n, 1},
		    {"diversity", e->c_div, e->div, 0, div_units, div_units ? 1 / e->real_div : 1},
		    {"recon_l1", e->c_recon, e->recon, 0, m, 1}};
	if (!d || !out)
		goto fail;
	for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
		int units = rows[r].units;
		double mean = 0, lo, hi;
		if (units == 0)
			continue;
		for (int i = 0; i < units; i++) {
			if (rows[r].per_output)
				d[i] = sketch_mean(e, rows[r].cand, i) - sketch_mean(e, rows[r].champ, i);
			else
				d[i] = (rows[r].cand[i] - rows[r].champ[i]) * rows[r].scale;
			mean += d[i] / units;
		}
		if (eval_boot_mean(d, units, BOOT_REPS, BOOT_SEED, &lo, &hi) < 0 ||
		    json_object_set_new(out, rows[r].name,
					json_pack("{s:f, s:[f, f]}", "change", mean, "interval", lo, hi)) < 0)
			goto fail;
	}
	free(d);
	return out;
fail:
	free(d);
	json_decref(out);
	return NULL;
}

/*
 * Every score of one model, overall and per slice; *metrics and *samples are
 * new objects. role: "candidate" or "champion" (written into each sample).
 */
static int score(struct eval *e, am_model *m, const char *role, json_t **metrics, json_t **samples)
{
	int S = e->hold->size;
	size_t ss = (size_t)S * S, img = ss * 3;
	double recon = 0;
	int rc;
	*metrics = *samples = NULL;
	if (!(*samples = json_array()))
		return AT_ENOMEM;
	for (int i = 0; i < e->n_sketches; i++) {
		const uint8_t *gray = e->hold->sketch + (size_t)e->pick[i] * ss;
		for (int k = 0; k < e->styles; k++) {
			if (job_cancelled(e->ctx))
				return AT_ECANCELLED;
			am_style style = {.kind = AM_STYLE_SEED, .seed = (uint64_t)k};
			size_t o = (size_t)i * e->styles + k;
			uint8_t *out = e->gen + o * img;
			if ((rc = am_model_stylize(m, gray, S, S, &style, out, S, S, e->st)) < 0) {
				snprintf(e->why, sizeof e->why, "evaluate: stylize: %s", am_status_message(e->st));
				return rc;
			}
			double ch = am_content_chamfer(gray, out, S, S),
			       f = am_edge_f1(gray, out, S, S, CONTENT_F1_TOL),
			       f2 = am_edge_f1(gray, out, S, S, EDGE_TOL);
			if (ch < 0 || f < 0 || f2 < 0) {
				snprintf(e->why, sizeof e->why, "evaluate: content scores failed");
				return AT_EINTERNAL;
			}
			e->chamfer[o] = ch;
			e->f1[o] = f;
			e->f1_2[o] = f2;
			char osha[65];
			if ((rc = put_png(e, out, 3, osha)) < 0)
				return rc;
			json_array_append_new(*samples, json_pack("{s:s, s:i, s:s, s:s, s:s, s:I}", "sketch",
								  e->sketch_sha[i], "style", k, "output", osha, "slice",
								  slice_name(e->slice[i]), "role", role, "image_id",
								  (json_int_t)e->hold->sketch_ids[e->pick[i]]));
		}
		e->div[i] = 0;
		if (e->styles >= 2 &&
		    (rc = am_diversity(e->gen + (size_t)i * e->styles * img, e->styles, S, S, &e->div[i], e->st)) < 0) {
			snprintf(e->why, sizeof e->why, "evaluate: diversity: %s", am_status_message(e->st));
			return rc;
		}
	}
	for (int j = 0; j < e->n_real; j++) {
		double err = 0;
		if ((rc = am_model_recon_error(m, e->real + (size_t)j * img, S, S, &err, e->st)) < 0) {
			snprintf(e->why, sizeof e->why, "evaluate: recon: %s", am_status_message(e->st));
			return rc;
		}
		e->recon[j] = err;
		recon += err;
	}
	if ((rc = metrics_for(e, -1, metrics)) < 0)
		return rc;
	json_object_set_new(*metrics, "recon_l1", json_real(recon / e->n_real));
	json_t *iv = json_object_get(*metrics, "intervals");
	if (iv && (rc = set_interval(iv, "recon_l1", e->recon, e->n_real)) < 0)
		return rc;
	json_t *slices = json_object();
	if (!slices)
		return AT_ENOMEM;
	json_object_set_new(*metrics, "slices", slices);
	for (int s = 0; s < SLICE_COUNT_; s++) {
		json_t *sm;
		if ((rc = metrics_for(e, s, &sm)) < 0)
			return rc;
		json_object_set_new(slices, slice_name(s), sm);
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
	json_t *payload = job_payload(ctx);
	struct params_reader pr;
	struct evaluate_params ep;
	params_reader_init(&pr, "evaluate", payload);
	int prc = evaluate_params_read(&pr, &ep);
	int samples = (int)ep.samples;
	int styles = (int)ep.styles;
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
	if (prc < 0) {
		snprintf(e.why, sizeof e.why, "%s", pr.why);
		job_no_retry(ctx);
		rc = prc;
		goto out;
	}
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
	size_t img = (size_t)hold.size * hold.size * 3, n_out = (size_t)e.n_sketches * styles;
	e.gen = malloc(n_out * img);
	e.sub = malloc(n_out * img);
	e.real = malloc((size_t)e.n_real * img);
	e.pick = calloc((size_t)e.n_sketches, sizeof *e.pick);
	e.slice = calloc((size_t)e.n_sketches, sizeof *e.slice);
	e.sketch_sha = calloc((size_t)e.n_sketches, sizeof *e.sketch_sha);
	e.div = calloc((size_t)e.n_sketches, sizeof *e.div);
	e.chamfer = calloc(n_out, sizeof *e.chamfer);
	e.f1 = calloc(n_out, sizeof *e.f1);
	e.f1_2 = calloc(n_out, sizeof *e.f1_2);
	e.recon = calloc((size_t)e.n_real, sizeof *e.recon);
	e.c_chamfer = calloc(n_out, sizeof *e.c_chamfer);
	e.c_f1 = calloc(n_out, sizeof *e.c_f1);
	e.c_f1_2 = calloc(n_out, sizeof *e.c_f1_2);
	e.c_div = calloc((size_t)e.n_sketches, sizeof *e.c_div);
	e.c_recon = calloc((size_t)e.n_real, sizeof *e.c_recon);
	if (!e.gen || !e.sub || !e.real || !e.pick || !e.slice || !e.sketch_sha || !e.div || !e.chamfer || !e.f1 ||
	    !e.f1_2 || !e.recon || !e.c_chamfer || !e.c_f1 || !e.c_f1_2 || !e.c_div || !e.c_recon) {
		rc = AT_ENOMEM;
		goto out;
	}
	for (int j = 0; j < e.n_real; j++)
		shard_painting_rgb(&hold, j, e.real + (size_t)j * img);
	if ((rc = pick_sketches(&e, c)) < 0)
		goto out;
	for (int i = 0; i < e.n_sketches; i++)
		if ((rc = put_png(&e, hold.sketch + (size_t)e.pick[i] * hold.size * hold.size, 1, e.sketch_sha[i])) < 0)
			goto out;
	{
		int nd = e.n_real < MAX_DIV_REAL ? e.n_real : MAX_DIV_REAL;
		if ((rc = am_diversity(e.real, nd, hold.size, hold.size, &e.real_div, e.st)) < 0) {
			snprintf(e.why, sizeof e.why, "evaluate: diversity of the real paintings: %s",
				 am_status_message(e.st));
			goto out;
		}
	}

	/* ---- candidate, then champion ---- */
	if (!(cand = load_model(&e, json_string_value(cand_sha), dir, "candidate"))) {
		rc = AT_ECORRUPT;
		goto out;
	}
	if ((rc = score(&e, cand, "candidate", &cm, &cs)) < 0)
		goto out;
	memcpy(e.c_chamfer, e.chamfer, n_out * sizeof *e.chamfer);
	memcpy(e.c_f1, e.f1, n_out * sizeof *e.f1);
	memcpy(e.c_f1_2, e.f1_2, n_out * sizeof *e.f1_2);
	memcpy(e.c_div, e.div, (size_t)e.n_sketches * sizeof *e.div);
	memcpy(e.c_recon, e.recon, (size_t)e.n_real * sizeof *e.recon);
	job_progress(ctx, 0.5, "candidate scored", -1);
	int found = 0, champ_ver = 0;
	int64_t champ_vid = 0;
	char champ_sha[65];
	if ((rc = dataset_db_production(c, model, &found, &champ_vid, &champ_ver, champ_sha, e.why, sizeof e.why)) < 0)
		goto out;
	if (found) {
		if (!(champ = load_model(&e, champ_sha, dir, "champion"))) {
			rc = AT_ECORRUPT;
			goto out;
		}
		if ((rc = score(&e, champ, "champion", &hm, &hs)) < 0)
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
	if (found) {
		json_t *paired = paired_changes(&e);
		if (!paired) {
			rc = AT_ENOMEM;
			goto out;
		}
		json_object_set_new(verdict, "paired", paired);
	}
	json_object_set_new(verdict, "holdout_shard", json_string(json_string_value(hold_sha)));
	json_object_set_new(verdict, "job", json_integer(job_id(ctx)));
	int passed = json_is_true(json_object_get(verdict, "passed"));
	/* The gallery: candidate and champion on the same inputs, in one list. */
	json_t *gallery = json_array(), *sketches = json_array(), *outputs = json_array();
	if (!gallery || !sketches || !outputs || json_array_extend(gallery, cs) < 0 ||
	    (hs && json_array_extend(gallery, hs) < 0)) {
		json_decref(gallery);
		json_decref(sketches);
		json_decref(outputs);
		rc = AT_ENOMEM;
		goto out;
	}
	size_t gi;
	json_t *g;
	json_array_foreach(gallery, gi, g)
	{
		json_array_append(sketches, json_object_get(g, "sketch"));
		json_array_append(outputs, json_object_get(g, "output"));
	}
	char vid[32];
	snprintf(vid, sizeof vid, "%lld", (long long)json_integer_value(cand_vid));
	json_t *run = json_object_get(payload, "run"), *shards = json_array();
	json_t *train_shard = dataset_input(payload, "train", "train_shard");
	if (shards) {
		json_array_append(shards, hold_sha);
		if (json_is_string(train_shard))
			json_array_append(shards, train_shard);
	}
	rc = shards ? 0 : AT_ENOMEM;
	if (rc == 0)
		rc = dataset_db_artifact_refs(c, sketches, "sample", "image/png", run, vid, e.why, sizeof e.why);
	if (rc == 0)
		rc = dataset_db_artifact_refs(c, outputs, "sample", "image/png", run, vid, e.why, sizeof e.why);
	if (rc == 0)
		rc = dataset_db_artifact_refs(c, shards, "shard", "application/octet-stream", run, NULL, e.why,
					      sizeof e.why);
	json_decref(sketches);
	json_decref(outputs);
	json_decref(shards);
	if (rc < 0) {
		json_decref(gallery);
		goto out;
	}
	json_t *vm = json_pack("{s:O, s:o, s:{s:I, s:s, s:i, s:i, s:o}}", "holdout", cm, "samples", gallery,
			       "evaluation", "job", (json_int_t)job_id(ctx), "holdout_shard",
			       json_string_value(hold_sha), "sketches", e.n_sketches, "styles", styles,
			       "champion_version", found ? json_integer(champ_ver) : json_null());
	char *vm_text = vm ? json_dumps(vm, JSON_COMPACT) : NULL, *verdict_text = json_dumps(verdict, JSON_COMPACT);
	json_decref(vm);
	const char *v[3] = {vid, vm_text, verdict_text};
	PGresult *r = NULL;
	if (!vm_text || !verdict_text)
		rc = AT_ENOMEM;
	else
		rc = dataset_db_exec(
			c,
			"UPDATE model_versions SET metrics = metrics || $2::jsonb, verdict = $3::jsonb WHERE id = $1",
			3, v, 0, &r, e.why, sizeof e.why);
	free(vm_text);
	free(verdict_text);
	if (rc < 0)
		goto out;
	PQclear(r);

	json_t *res =
		json_pack("{s:b, s:O, s:O, s:{s:O?, s:O, s:O, s:O}, s:o, s:{s:O, s:O?}}", "passed", passed, "reasons",
			  json_object_get(verdict, "reasons"), "verdict", verdict, "candidate", "version", cand_ver,
			  "version_id", cand_vid, "sha256", cand_sha, "metrics", cm, "champion",
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
	free(e.sub);
	free(e.real);
	free(e.pick);
	free(e.slice);
	free(e.sketch_sha);
	free(e.div);
	free(e.chamfer);
	free(e.f1);
	free(e.f1_2);
	free(e.recon);
	free(e.c_chamfer);
	free(e.c_f1);
	free(e.c_f1_2);
	free(e.c_div);
	free(e.c_recon);
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
