/*
 * Do evaluate's metrics rank models? (issue 11; docs/training.md, "Do the
 * metrics rank models?")
 *
 * On the synthetic world, prepared as the pipeline prepares it (sketches
 * drawn at 256 px, normalised there as ingest does, then again at the
 * training size as prepare does; paintings fitted), one small MUNIT is
 * trained for RANK_STEPS steps. Three serving exports are scored: the
 * untrained model (step 0), the 10x shorter one (step RANK_STEPS/10) and the
 * trained one. The 10x shorter model is the trained run's own export at
 * that step: training is deterministic on one CPU thread (same seed, same
 * batches, no learning-rate drop before step 100000), so it is the model a
 * separate run of RANK_STEPS/10 steps would give, at a tenth of the cost.
 *
 * Every model is scored the way workers/jobs_evaluate.c scores it, with the
 * same functions: the same holdout sketches x seeded styles through
 * am_model_stylize, content (chamfer), content_f1 (tol 1), kid with its
 * interval, diversity divided by the real paintings' figure, recon_l1 over
 * the real holdout paintings; then the shipped pipeline's gate
 * (pipelines/sketch2paint.yaml) decides between them, as evaluate would.
 *
 * The assertions are those that held on all five seeds measured (the
 * figures are in docs/training.md); where a metric does not rank as the
 * issue asks, the test asserts what does hold for it and says so.
 *
 * One core (am_set_threads(1)); about a minute on a quiet machine.
 * ATELIER_RANK_SEED (default 1), ATELIER_RANK_STEPS (default RANK_STEPS),
 * ATELIER_RANK_SIZE (default 64), ATELIER_RANK_CONFIG (the shim's JSON keys)
 * and ATELIER_RANK_SHEET (a PNG of the outputs) rerun it otherwise, as the
 * measurements did; the assertions are meant for the defaults.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../orchestrator/pipeline_yaml.h"
#include "../../workers/evaluation.h" /* gate_apply */
#include "atelier_model.h"
#include "err.h"
#include "image.h"
#include "splitmix.h"
#include "synth.h"
#include "test.h"

/* The side the model runs at; ATELIER_RANK_SIZE overrides it for measurements. */
static int rank_size = 64;
#define SIZE rank_size
#define N_TRAIN 200    /* training sketches and (other) paintings */
#define N_SKETCH 8     /* holdout sketches scored (evaluate's default `samples`) */
#define N_STYLES 4     /* seeded styles per sketch (evaluate's default `styles`) */
#define N_REAL 48      /* real holdout paintings for kid and recon_l1 */
#define RANK_STEPS 400 /* the trained model; the short one gets a tenth */
#define RANK_LR 2e-4
#define RANK_EMA 0.999 /* the pipeline's: exports are the generators' moving average */
#define N_OUT (N_SKETCH * N_STYLES)
#define CONTENT_F1_TOL 1 /* as jobs_evaluate.c */

enum { UNTRAINED, SHORT, TRAINED, N_MODELS };
static const char *const model_name[N_MODELS] = {"untrained", "short", "trained"};

struct scores {
	double content, content_f1, diversity, recon_l1;
	am_interval kid;
	uint64_t steps;
};

static struct {
	int done, failed;
	uint64_t seed;
	int steps;
	uint8_t *sk, *pa;   /* training: N_TRAIN gray, N_TRAIN RGB */
	uint8_t *hsk, *hpa; /* holdout: N_SKETCH gray, N_REAL RGB */
	double real_div;
	struct scores s[N_MODELS];
	struct scores short_alone; /* a separate run of steps/10: must equal s[SHORT] */
	char dir[256];
} R;

#define ASSERT_OK(expr)                                                                            \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ < 0)                                                                       \
			TEST_FAIL_("%s: %s (%s)", #expr, at_strerror(rc_), am_status_message(st)); \
	} while (0)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t env_u64(const char *name, uint64_t def, uint64_t lo, uint64_t hi)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || v < lo || v > hi) {
		fprintf(stderr, "%s=%s: out of range %" PRIu64 "..%" PRIu64 "; using %" PRIu64 "\n", name, s, lo, hi,
			def);
		return def;
	}
	return v;
}

/* ---- data: what ingest and prepare would hand the trainer and evaluate ---- */

/* Four seed ranges (as bench/train/recipe.c): sketches and paintings never
 * share an instance (synth's even/odd streams), and the holdout's seeds lie
 * 2,000,000 past the training ones, so the two sets are disjoint. */
static int make_data(void)
{
	size_t ss = (size_t)SIZE * SIZE;
	uint64_t base = R.seed * 4000003;
	R.sk = malloc(N_TRAIN * ss);
	R.pa = malloc(N_TRAIN * ss * 3);
	R.hsk = malloc(N_SKETCH * ss);
	R.hpa = malloc(N_REAL * ss * 3);
	if (!R.sk || !R.pa || !R.hsk || !R.hpa)
		return AT_ENOMEM;
	int rc = 0;
	for (int i = 0; rc == 0 && i < N_TRAIN; i++) {
		rc = synth_sketch_as_trained(base + 2 * (uint64_t)i, SIZE, R.sk + i * ss);
		if (rc == 0)
			rc = synth_painting_as_trained(base + 2 * (uint64_t)i + 1, SIZE, R.pa + i * ss * 3);
	}
	for (int i = 0; rc == 0 && i < N_SKETCH; i++)
		rc = synth_sketch_as_trained(base + 2000000 + 2 * (uint64_t)i, SIZE, R.hsk + i * ss);
	for (int i = 0; rc == 0 && i < N_REAL; i++)
		rc = synth_painting_as_trained(base + 2000001 + 2 * (uint64_t)i, SIZE, R.hpa + i * ss * 3);
	return rc;
}

/* ---- the model: close to the shipped CPU recipe, at 64 px ---- */

static am_config rank_config(void)
{
	am_config c = am_config_default();
	c.image_size = SIZE;
	c.gen_dim = 16;
	c.dis_dim = 16;
	c.n_res = 2;
	c.mlp_dim = 64;
	c.style_dim = 8;
	c.num_scales = 2;
	c.n_layer = 3;
	c.recon_x_cyc_w = 0;
	c.ema_decay = RANK_EMA;
	c.lr = RANK_LR;
	const char *lr = getenv("ATELIER_RANK_LR");
	if (lr && *lr)
		c.lr = strtod(lr, NULL);
	c.seed = R.seed;
	c.threads = 1;
	snprintf(c.device, sizeof c.device, "cpu");
	return c;
}

/* ---- scoring, as jobs_evaluate.c's score() and metrics_for() ---- */

/* ATELIER_RANK_SHEET=FILE.png: one row per model (its first 2 sketches x
 * N_STYLES outputs), for a person to look at what the figures mean. */
static uint8_t *sheet;
#define SHEET_COLS (2 * (N_STYLES + 1))

static void sheet_put(int row, int col, const uint8_t *px, int channels)
{
	int sw = SHEET_COLS * SIZE;
	for (int y = 0; y < SIZE; y++)
		for (int x = 0; x < SIZE; x++)
			for (int c = 0; c < 3; c++)
				sheet[((size_t)(row * SIZE + y) * sw + col * SIZE + x) * 3 + c] =
					px[((size_t)y * SIZE + x) * channels + (channels == 1 ? 0 : c)];
}

static void sheet_row(int row, const uint8_t *gen)
{
	size_t ss = (size_t)SIZE * SIZE;
	for (int i = 0; sheet && i < 2; i++) {
		sheet_put(row, i * (N_STYLES + 1), R.hsk + i * ss, 1);
		for (int k = 0; k < N_STYLES; k++)
			sheet_put(row, i * (N_STYLES + 1) + 1 + k, gen + ((size_t)i * N_STYLES + k) * ss * 3, 3);
	}
}

static int score(am_model *m, struct scores *out, am_status_t *st)
{
	size_t ss = (size_t)SIZE * SIZE, img = ss * 3;
	uint8_t *gen = malloc(N_OUT * img);
	double chamfer = 0, f1 = 0, div = 0, recon = 0;
	int rc = gen ? 0 : AT_ENOMEM;
	for (int i = 0; rc == 0 && i < N_SKETCH; i++) {
		const uint8_t *gray = R.hsk + i * ss;
		for (int k = 0; rc == 0 && k < N_STYLES; k++) {
			am_style style = {.kind = AM_STYLE_SEED, .seed = (uint64_t)k};
			uint8_t *o = gen + ((size_t)i * N_STYLES + k) * img;
			if ((rc = am_model_stylize(m, gray, SIZE, SIZE, &style, o, SIZE, SIZE, st)) < 0)
				break;
			double ch = am_content_chamfer(gray, o, SIZE, SIZE);
			double f = am_edge_f1(gray, o, SIZE, SIZE, CONTENT_F1_TOL);
			if (ch < 0 || f < 0) {
				rc = AT_EINTERNAL;
				break;
			}
			chamfer += ch;
			f1 += f;
		}
		double d = 0;
		if (rc == 0 && (rc = am_diversity(gen + (size_t)i * N_STYLES * img, N_STYLES, SIZE, SIZE, &d, st)) == 0)
			div += d;
	}
	for (int j = 0; rc == 0 && j < N_REAL; j++) {
		double err = 0;
		if ((rc = am_model_recon_error(m, R.hpa + j * img, SIZE, SIZE, &err, st)) == 0)
			recon += err;
	}
	if (rc == 0)
		rc = am_kid(gen, N_OUT, R.hpa, N_REAL, SIZE, SIZE, &out->kid, st);
	if (rc == 0 && out >= R.s && out < R.s + N_MODELS)
		sheet_row((int)(out - R.s), gen);
	if (rc == 0) {
		out->content = chamfer / N_OUT;
		out->content_f1 = f1 / N_OUT;
		out->diversity = div / N_SKETCH / R.real_div;
		out->recon_l1 = recon / N_REAL;
	}
	free(gen);
	return rc;
}

static int export_and_score(am_trainer *t, struct scores *out, am_status_t *st)
{
	char path[300];
	snprintf(path, sizeof path, "%s/model.atlr", R.dir);
	int rc = am_trainer_export(t, path, st);
	if (rc < 0)
		return rc;
	am_model *m = am_model_load(path, "cpu", st);
	unlink(path);
	if (!m)
		return am_status_code(st) < 0 ? am_status_code(st) : AT_EINTERNAL;
	out->steps = am_trainer_steps(t);
	rc = score(m, out, st);
	am_model_free(m);
	return rc;
}

static void print_figures(void)
{
	printf("seed %" PRIu64 ", %d px, %d sketches x %d styles vs %d real paintings; diversity of the real "
	       "paintings %.4f\n",
	       R.seed, SIZE, N_SKETCH, N_STYLES, N_REAL, R.real_div);
	printf("%-9s %5s %7s %7s %-24s %6s %7s\n", "model", "steps", "content", "cont_f1", "kid [90%]", "divers",
	       "recon");
	for (int i = 0; i < N_MODELS; i++) {
		const struct scores *s = &R.s[i];
		printf("%-9s %5" PRIu64 " %7.3f %7.3f %.4f [%.4f, %.4f] %6.3f %7.4f\n", model_name[i], s->steps,
		       s->content, s->content_f1, s->kid.value, s->kid.lo, s->kid.hi, s->diversity, s->recon_l1);
	}
	fflush(stdout);
}

/* Batch 1, unpaired: a random training sketch and a random painting per
 * step, as the train stage draws them. */
static void next_batch(uint64_t *rng, float *bs, float *bp)
{
	size_t ss = (size_t)SIZE * SIZE;
	int i = (int)(splitmix64_next(rng) % N_TRAIN), j = (int)(splitmix64_next(rng) % N_TRAIN);
	for (size_t p = 0; p < ss; p++)
		bs[p] = R.sk[i * ss + p] / 127.5f - 1.0f;
	for (size_t p = 0; p < ss; p++)
		for (int ch = 0; ch < 3; ch++)
			bp[ch * ss + p] = R.pa[(j * ss + p) * 3 + ch] / 127.5f - 1.0f;
}

/* Trains and scores once; every test below reads R.s. */
static void ensure_scored(void)
{
	if (R.done) {
		if (R.failed)
			TEST_FAIL_("training or scoring failed earlier");
		return;
	}
	R.done = R.failed = 1;
	R.seed = env_u64("ATELIER_RANK_SEED", 1, 0, 1ull << 40);
	R.steps = (int)env_u64("ATELIER_RANK_STEPS", RANK_STEPS, 10, 100000);
	rank_size = (int)env_u64("ATELIER_RANK_SIZE", (uint64_t)rank_size, 32, 256);
	am_status_t *st = am_status_new();
	am_trainer *t = NULL;
	float *bs = NULL, *bp = NULL;
	ASSERT(st);
	ASSERT_OK(image_init());
	ASSERT_OK(am_set_threads(1, st));
	const char *base = getenv("TMPDIR");
	snprintf(R.dir, sizeof R.dir, "%s/atelier-rank-XXXXXX", base && *base ? base : "/tmp");
	ASSERT(mkdtemp(R.dir));

	if (getenv("ATELIER_RANK_SHEET"))
		sheet = calloc((size_t)SHEET_COLS * SIZE * N_MODELS * SIZE, 3);
	double t0 = now();
	ASSERT_OK(make_data());
	ASSERT_OK(am_diversity(R.hpa, N_REAL, SIZE, SIZE, &R.real_div, st));
	ASSERT_OP_DBL(R.real_div, >, 0);
	double t_data = now() - t0;

	am_config c = rank_config();
	/* ATELIER_RANK_CONFIG: the shim's JSON keys on top, for measurements. */
	const char *cj = getenv("ATELIER_RANK_CONFIG");
	if (cj && *cj)
		ASSERT_OK(am_config_from_json(cj, &c, st));
	t = am_trainer_new(&c, st);
	ASSERT(t);
	size_t ss = (size_t)SIZE * SIZE;
	bs = malloc(ss * sizeof *bs);
	bp = malloc(3 * ss * sizeof *bp);
	ASSERT(bs && bp);
	ASSERT_OK(export_and_score(t, &R.s[UNTRAINED], st));
	uint64_t rng = R.seed * 7919 + 1;
	double t_train = 0;
	for (int step = 1; step <= R.steps; step++) {
		next_batch(&rng, bs, bp);
		double t1 = now();
		ASSERT_OK(am_trainer_step(t, bs, bp, 1, NULL, st));
		t_train += now() - t1;
		if (step == R.steps / 10)
			ASSERT_OK(export_and_score(t, &R.s[SHORT], st));
	}
	ASSERT_OK(export_and_score(t, &R.s[TRAINED], st));
	am_trainer_free(t);
	/* The same config trained steps/10 from scratch, on the same batches. */
	t = am_trainer_new(&c, st);
	ASSERT(t);
	rng = R.seed * 7919 + 1;
	for (int step = 1; step <= R.steps / 10; step++) {
		next_batch(&rng, bs, bp);
		ASSERT_OK(am_trainer_step(t, bs, bp, 1, NULL, st));
	}
	ASSERT_OK(export_and_score(t, &R.short_alone, st));
	printf("data %.1f s, training %d steps %.1f s (%.3f s/step), total %.1f s\n", t_data, R.steps, t_train,
	       t_train / R.steps, now() - t0);
	print_figures();
	const char *sheet_path = getenv("ATELIER_RANK_SHEET");
	if (sheet && sheet_path) {
		uint8_t *png = NULL;
		size_t len = 0;
		FILE *f = NULL;
		if (image_encode_png(sheet, SHEET_COLS * SIZE, N_MODELS * SIZE, 3, 6, &png, &len) == 0 &&
		    (f = fopen(sheet_path, "wb")))
			fwrite(png, 1, len, f);
		if (f)
			fclose(f);
		free(png);
	}
	free(sheet);
	sheet = NULL;
	am_trainer_free(t);
	am_status_free(st);
	free(bs);
	free(bp);
	rmdir(R.dir);
	R.failed = 0;
}

/* ---- the rankings ----
 *
 * Measured at 400 / 40 / 0 steps on seeds 1..5 (docs/training.md has every
 * figure). What held on all five is asserted, with the margin the figures
 * allow; what did not is printed and written down, not asserted. At 400
 * steps batch 1 the GAN still swings (a palette that suits the
 * discriminator one hundred steps, not the next), so a single snapshot is
 * not always better than the one at step 40.
 */

#define T (&R.s[TRAINED])
#define SH (&R.s[SHORT])
#define U (&R.s[UNTRAINED])

TEST(trains_and_scores_three_models)
{
	ensure_scored();
	for (int i = 0; i < N_MODELS; i++) {
		ASSERT(isfinite(R.s[i].content) && isfinite(R.s[i].kid.value) && isfinite(R.s[i].diversity));
		ASSERT(R.s[i].kid.lo <= R.s[i].kid.value && R.s[i].kid.value <= R.s[i].kid.hi);
	}
	ASSERT_EQ_INT(SH->steps, R.steps / 10);
	ASSERT_EQ_INT(T->steps, R.steps);
	/* The 10x shorter model is what a run of steps/10 gives on its own. */
	ASSERT_EQ_INT(R.short_alone.steps, SH->steps);
	ASSERT_OP_DBL(R.short_alone.content, ==, SH->content);
	ASSERT_OP_DBL(R.short_alone.kid.value, ==, SH->kid.value);
	ASSERT_OP_DBL(R.short_alone.recon_l1, ==, SH->recon_l1);
}

/* recon_l1 ranks trained < short < untrained on every seed, by wide margins
 * (with the moving average: trained/short 0.39..0.60, trained/untrained
 * 0.22..0.33 measured). */
TEST(recon_l1_ranks_trained_first)
{
	ensure_scored();
	ASSERT_OP_DBL(T->recon_l1, <, 0.8 * SH->recon_l1);
	ASSERT_OP_DBL(T->recon_l1, <, 0.5 * U->recon_l1);
	ASSERT_OP_DBL(SH->recon_l1, <, U->recon_l1);
}

/* diversity ranks the trained model above the short one (whose styles
 * barely differ) on every seed, but not above the untrained one: random
 * style codes through a random MLP already vary the output (seed 1:
 * untrained 0.38 > trained 0.28). */
TEST(diversity_ranks_trained_above_short)
{
	ensure_scored();
	ASSERT_OP_DBL(T->diversity, >, SH->diversity);
}

/* kid ranked the trained model first on seeds 1 and 2 (with 90 % intervals
 * apart from the short model's), but on seed 4 the step-40 model was
 * better and on seeds 3 and 5 the untrained one (without the moving
 * average: first on seeds 1..3): what held on all five, either way, is
 * that the trained model is never last. */
TEST(kid_never_ranks_trained_last)
{
	ensure_scored();
	ASSERT_OP_DBL(T->kid.value, <, fmax(SH->kid.value, U->kid.value));
}

/* content ranks neither comparison on every seed: the step-40 model, which
 * often draws the sketch's strokes back as thin dark lines on a pale,
 * nearly flat wash, keeps the structure best on seeds 1, 3 and 5; the
 * trained one adds colour and texture whose edges the sketch does not have,
 * and scored worse than the untrained model on seeds 3, 4 and 5. Content
 * alone cannot rank an untrained PONO model last (the gate's decision,
 * below, is what ranks). What holds: every model
 * keeps the drawing, far below the ~4.3 px of an output that ignores it
 * (PONO-MS carries the sketch through even random weights). */
TEST(content_every_model_keeps_the_drawing)
{
	ensure_scored();
	for (int i = 0; i < N_MODELS; i++)
		ASSERT_OP_DBL(R.s[i].content, <, 2.0);
}

/* content_f1 ranks neither comparison on every seed either (with the
 * moving average, seed 2's trained and short models tie: content 1.149 vs
 * 1.179, content_f1 0.731 vs 0.733, so it need not even agree with
 * content). What holds: every model keeps most of the drawing's edges. */
TEST(content_f1_keeps_the_drawing)
{
	ensure_scored();
	for (int i = 0; i < N_MODELS; i++)
		ASSERT_OP_DBL(R.s[i].content_f1, >, 0.5);
}

/* ---- the gate's decision ----
 *
 * No single structure metric can rank an untrained PONO model last: PONO-MS
 * hands the sketch's own moments to the decoder, so random weights already
 * draw the lines back (docs/training.md). The pipeline does not rely on one
 * metric: its gate promotes a candidate only when content, kid and recon_l1
 * all hold against the champion. That decision is what must rank, and it is
 * checked here with the shipped pipeline's own rules.
 */

/* The metrics object evaluate writes for a model (overall; no slices, so a
 * slice rule passes as "no samples"). */
static json_t *metrics_json(const struct scores *s)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f}", "content", s->content, "content_f1", s->content_f1, "kid",
			 s->kid.value, "diversity", s->diversity, "recon_l1", s->recon_l1);
}

static json_t *shipped_gate(void)
{
	const char *root = getenv("ATELIER_ROOT");
	char path[512];
	snprintf(path, sizeof path, "%s/pipelines/sketch2paint.yaml", root && *root ? root : ".");
	pipeline_t *p = NULL;
	struct pipeline_error e;
	if (pipeline_yaml_load_file(path, &p, &e) != 0) {
		fprintf(stderr, "%s\n", e.text);
		return NULL;
	}
	json_t *rules = json_array();
	for (size_t i = 0; rules && i < p->n_stages; i++)
		for (size_t k = 0; k < p->stages[i].n_gate; k++) {
			const struct pipeline_gate_rule *g = &p->stages[i].gate[k];
			json_array_append_new(rules, json_pack("{s:s, s:s, s:f, s:s*}", "metric", g->metric, "op",
							       pipeline_gate_op_name(g->op), "threshold", g->threshold,
							       "slice", g->slice));
		}
	pipeline_free(p);
	return rules;
}

/* 1 when the gate promotes cand over champ, 0 when it refuses, -1 on error. */
static int promotes(const json_t *rules, const struct scores *cand, const struct scores *champ)
{
	json_t *c = metrics_json(cand), *h = metrics_json(champ);
	json_t *v = c && h ? gate_apply(rules, c, h) : NULL;
	int out = v ? json_is_true(json_object_get(v, "passed")) : -1;
	if (v) {
		char *text = json_dumps(json_object_get(v, "reasons"), 0);
		printf("gate: %s over %s: %s %s\n", model_name[cand - R.s], model_name[champ - R.s],
		       out ? "promoted" : "refused", text ? text : "");
		free(text);
	}
	json_decref(c);
	json_decref(h);
	json_decref(v);
	return out;
}

/* At 400 steps the gate refused the untrained and the short model as
 * challengers of the trained one on all five seeds (recon_l1 or kid
 * regress beyond the rules' tolerances; seed 4's short model by a recon_l1
 * margin of 0.003). That the trained model also replaces both held on 2/5
 * (over untrained) and 4/5 (over short): its kid still swings at 400
 * steps. bench/ranking checks all four decisions at 1000 steps. */
TEST(the_shipped_gate_keeps_the_trained_model)
{
	ensure_scored();
	json_t *rules = shipped_gate();
	ASSERT(rules != NULL);
	ASSERT_OP_INT(json_array_size(rules), >=, 3);
	int t_u = promotes(rules, T, U), t_sh = promotes(rules, T, SH);
	int u_t = promotes(rules, U, T), sh_t = promotes(rules, SH, T);
	json_decref(rules);
	ASSERT(t_u >= 0 && t_sh >= 0);
	ASSERT_EQ_INT(u_t, 0);
	ASSERT_EQ_INT(sh_t, 0);
}

RUN_TESTS(trains_and_scores_three_models, recon_l1_ranks_trained_first, diversity_ranks_trained_above_short,
	  kid_never_ranks_trained_last, content_every_model_keeps_the_drawing, content_f1_keeps_the_drawing,
	  the_shipped_gate_keeps_the_trained_model)
