/*
 * recipe.c — the measurement behind pipelines/sketch2paint.yaml's training
 * recipe (docs/training.md, "The CPU recipe"): trains one configuration on
 * the synthetic world for a wall-clock budget, the way the train stage does
 * (unpaired batches drawn at random from a training set), and at fixed
 * fractions of the budget scores it on a holdout set and writes a sheet.
 *
 *   recipe --out DIR [--seconds 600] [--size 64] [--batch 1] [--threads 2]
 *          [--train 400] [--holdout 64] [--evals 4] [--seed 1] [--config JSON]
 *
 * --config takes the model shim's JSON keys (docs/model.md), e.g.
 * '{"gen_dim":16,"lr":2e-4}'. Output: one line per evaluation,
 *   t=SECONDS step=N s_per_step=X <metric>=<value> ...
 * and DIR/sheet_<step>.png: per row a holdout sketch, then its painting in 4
 * styles; the last row holds real holdout paintings for comparison.
 *
 * Data: lib/synth's world at 256 px; sketches go through lib/sketchnorm twice
 * (ingest, then prepare), paintings are fitted, as the pipeline does.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "atelier_model.h"
#include "image.h"
#include "splitmix.h"
#include "synth.h"

#define SHEET_ROWS 8
#define SHEET_STYLES 4

struct data {
	int size, n_train, n_hold;
	uint8_t *sk, *pa;   /* n_train gray, n_train RGB */
	uint8_t *hsk, *hpa; /* n_hold gray, n_hold RGB */
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "recipe: %s: %s\n", what, why);
	exit(1);
}

/* ---- data: the synthetic world as the train stage sees it (lib/synth) ---- */

static void make_sketch(uint64_t seed, int size, uint8_t *gray)
{
	if (synth_sketch_as_trained(seed, size, gray) < 0)
		die("synth", "sketch");
}

static void make_painting(uint64_t seed, int size, uint8_t *rgb)
{
	if (synth_painting_as_trained(seed, size, rgb) < 0)
		die("synth", "painting");
}

static void data_make(struct data *d, int size, int n_train, int n_hold, uint64_t seed)
{
	size_t ss = (size_t)size * size;
	d->size = size, d->n_train = n_train, d->n_hold = n_hold;
	d->sk = malloc(n_train * ss), d->pa = malloc(n_train * ss * 3);
	d->hsk = malloc(n_hold * ss), d->hpa = malloc(n_hold * ss * 3);
	if (!d->sk || !d->pa || !d->hsk || !d->hpa)
		die("data", "out of memory");
	/* Four seed streams: sketches and paintings never share an instance,
	 * and the holdout never shares one with training. */
	for (int i = 0; i < n_train; i++) {
		make_sketch(seed * 4000003 + 2 * (uint64_t)i, size, d->sk + i * ss);
		make_painting(seed * 4000003 + 2 * (uint64_t)i + 1, size, d->pa + i * ss * 3);
	}
	for (int i = 0; i < n_hold; i++) {
		make_sketch(seed * 4000003 + 2000000 + 2 * (uint64_t)i, size, d->hsk + i * ss);
		make_painting(seed * 4000003 + 2000001 + 2 * (uint64_t)i, size, d->hpa + i * ss * 3);
	}
}

static void to_float(const uint8_t *px, size_t n, float *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = px[i] / 127.5f - 1.0f;
}

/* uint8 HWC RGB -> float NCHW planes. */
static void rgb_to_float(const uint8_t *px, size_t ss, float *out)
{
	for (size_t i = 0; i < ss; i++)
		for (int c = 0; c < 3; c++)
			out[c * ss + i] = px[i * 3 + c] / 127.5f - 1.0f;
}

/* ---- evaluation ---- */

static void put(uint8_t *sheet, int sw, int x0, int y0, const uint8_t *px, int channels, int size, int zoom)
{
	for (int y = 0; y < size * zoom; y++)
		for (int x = 0; x < size * zoom; x++)
			for (int c = 0; c < 3; c++) {
				size_t i = (size_t)(y / zoom) * size + x / zoom;
				sheet[((size_t)(y0 + y) * sw + x0 + x) * 3 + c] = channels == 1 ? px[i] : px[i * 3 + c];
			}
}

static void evaluate(am_trainer *t, const struct data *d, const char *dir, uint64_t step, double t_s, double s_per_step,
		     int zoom)
{
	int S = d->size, n = d->n_hold, n_out = n * SHEET_STYLES;
	size_t ss = (size_t)S * S;
	uint8_t *out = malloc(n_out * ss * 3);
	am_status_t *st = am_status_new();
	if (!out || !st)
		die("evaluate", "out of memory");
	double f1 = 0, cham = 0, div = 0, dv;
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < SHEET_STYLES; k++) {
			am_style style = {.kind = AM_STYLE_SEED, .seed = (uint64_t)k};
			uint8_t *o = out + ((size_t)i * SHEET_STYLES + k) * ss * 3;
			if (am_trainer_stylize(t, d->hsk + i * ss, S, S, &style, o, S, S, st) < 0)
				die("stylize", am_status_message(st));
			f1 += am_edge_f1(d->hsk + i * ss, o, S, S, 1);
			cham += am_content_chamfer(d->hsk + i * ss, o, S, S);
		}
		if (am_diversity(out + (size_t)i * SHEET_STYLES * ss * 3, SHEET_STYLES, S, S, &dv, st) < 0)
			die("diversity", am_status_message(st));
		div += dv;
	}
	/* Diversity relative to the real paintings' (as evaluate reports it). */
	double real_div = 0;
	if (am_diversity(d->hpa, n, S, S, &real_div, st) < 0)
		die("diversity", am_status_message(st));
	am_interval kid;
	if (am_kid(out, n_out, d->hpa, n, S, S, &kid, st) < 0)
		die("kid", am_status_message(st));
	printf("t=%.0f step=%llu s_per_step=%.3f kid=%.4f [%.4f, %.4f] content=%.3f content_f1=%.3f diversity=%.3f\n",
	       t_s, (unsigned long long)step, s_per_step, kid.value, kid.lo, kid.hi, cham / n_out, f1 / n_out,
	       real_div > 0 ? div / n / real_div : 0);
	fflush(stdout);

	int cell = S * zoom, sw = cell * (SHEET_STYLES + 1), sh = cell * (SHEET_ROWS + 1);
	uint8_t *sheet = calloc((size_t)sw * sh, 3);
	for (int r = 0; r < SHEET_ROWS && r < n; r++) {
		put(sheet, sw, 0, r * cell, d->hsk + r * ss, 1, S, zoom);
		for (int k = 0; k < SHEET_STYLES; k++)
			put(sheet, sw, (k + 1) * cell, r * cell, out + ((size_t)r * SHEET_STYLES + k) * ss * 3, 3, S,
			    zoom);
	}
	for (int k = 0; k <= SHEET_STYLES && k < n; k++)
		put(sheet, sw, k * cell, SHEET_ROWS * cell, d->hpa + k * ss * 3, 3, S, zoom);
	uint8_t *png;
	size_t len;
	char path[1024];
	snprintf(path, sizeof path, "%s/sheet_%06llu.png", dir, (unsigned long long)step);
	FILE *f;
	if (image_encode_png(sheet, sw, sh, 3, 6, &png, &len) < 0 || !(f = fopen(path, "wb")))
		die("sheet", path);
	fwrite(png, 1, len, f);
	fclose(f);
	free(png);
	free(sheet);
	free(out);
	am_status_free(st);
}

/* ---- main ---- */

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return def;
}

static long num(int argc, char **argv, const char *name, long def, long lo, long hi)
{
	const char *s = opt(argc, argv, name, NULL);
	if (!s)
		return def;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < lo || v > hi)
		die(name, "out of range");
	return v;
}

int main(int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--out", NULL);
	if (!dir)
		die("usage", "recipe --out DIR [--seconds N] [--size S] [--batch B] [--threads T] [--config JSON]");
	long seconds = num(argc, argv, "--seconds", 600, 1, 86400);
	int size = (int)num(argc, argv, "--size", 64, 16, 512);
	int batch = (int)num(argc, argv, "--batch", 1, 1, 64);
	int threads = (int)num(argc, argv, "--threads", 2, 1, 64);
	int n_train = (int)num(argc, argv, "--train", 400, 8, 100000);
	int n_hold = (int)num(argc, argv, "--holdout", 64, SHEET_ROWS, 4096);
	int evals = (int)num(argc, argv, "--evals", 4, 1, 100);
	uint64_t seed = (uint64_t)num(argc, argv, "--seed", 1, 0, 1L << 40);
	const char *cfg_json = opt(argc, argv, "--config", "{}");
	mkdir(dir, 0755);

	am_status_t *st = am_status_new();
	if (image_init() < 0)
		die("image_init", "libvips");
	am_config c = am_config_default();
	c.image_size = size;
	c.threads = threads;
	c.seed = seed;
	snprintf(c.device, sizeof c.device, "cpu");
	if (am_config_from_json(cfg_json, &c, st) < 0)
		die("--config", am_status_message(st));
	char *cj = am_config_to_json(&c);
	printf("config %s batch=%d seconds=%ld train=%d holdout=%d\n", cj, batch, seconds, n_train, n_hold);
	free(cj);

	struct data d;
	double t0 = now();
	data_make(&d, size, n_train, n_hold, seed);
	printf("data %.1f s\n", now() - t0);

	am_trainer *t = am_trainer_new(&c, st);
	if (!t)
		die("trainer", am_status_message(st));
	size_t ss = (size_t)size * size;
	float *bs = malloc(batch * ss * sizeof *bs), *bp = malloc(batch * 3 * ss * sizeof *bp);
	uint64_t rng = seed * 7919;
	int zoom = size >= 128 ? 1 : 128 / size;
	evaluate(t, &d, dir, 0, 0, 0, zoom);
	/* The budget counts training time only, not the evaluations. */
	double trained = 0, next = seconds / (double)evals, seg = 0;
	uint64_t seg_steps = 0;
	am_losses l = {0};
	for (;;) {
		for (int b = 0; b < batch; b++) {
			int i = (int)(splitmix64_next(&rng) % (uint64_t)n_train),
			    j = (int)(splitmix64_next(&rng) % (uint64_t)n_train);
			to_float(d.sk + i * ss, ss, bs + b * ss);
			rgb_to_float(d.pa + j * ss * 3, ss, bp + b * 3 * ss);
		}
		double t1 = now();
		if (am_trainer_step(t, bs, bp, batch, &l, st) < 0)
			die("step", am_status_message(st));
		double dt = now() - t1;
		trained += dt, seg += dt, seg_steps++;
		double el = trained;
		if (l.step % 50 == 0)
			printf("  step %llu gen %.3f dis %.3f recon_x_b %.3f adv_b %.3f\n", (unsigned long long)l.step,
			       l.gen_total, l.dis_total, l.recon_x_b, l.gen_adv_b);
		if (el >= next) {
			evaluate(t, &d, dir, l.step, el, seg / (double)seg_steps, zoom);
			seg = 0, seg_steps = 0;
			next += seconds / (double)evals;
			if (el >= seconds)
				break;
		}
	}
	am_trainer_free(t);
	am_status_free(st);
	return 0;
}
