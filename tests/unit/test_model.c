/*
 * Unit tests for the model shim (models/atelier_model.h): config, training,
 * checkpoints, serving exports, styles, broken files, evaluation scores.
 *
 * One tiny MUNIT (gen dim 8, 32x32) is trained once, lazily, and shared by
 * the tests that need trained weights; files go to a fresh folder under
 * $TMPDIR that the last test removes. Runs on CUDA when libtorch sees a GPU:
 * comparisons of whole training steps are exact on the CPU only.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../models/atelier_model.h" /* the Makefile gives C code -Ilib only */
#include "err.h"
#include "test.h"

#define S 32
#define NPAIRS 4

/* ---- helpers ---- */

static am_config tiny_config(void)
{
	am_config c = am_config_default();
	c.image_size = S;
	c.gen_dim = 8;
	c.style_dim = 4;
	c.n_res = 1;
	c.mlp_dim = 16;
	c.dis_dim = 8;
	c.n_layer = 2;
	c.num_scales = 2;
	c.lr = 1e-3;
	c.seed = 7;
	c.threads = 1;
	return c;
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
	rng_state = rng_state * 1664525u + 1013904223u;
	return rng_state >> 8;
}

/* Sketch: white page (+1), a dark rectangle outline and a diagonal stroke. */
static void make_sketch(float *px, int i)
{
	for (int p = 0; p < S * S; p++)
		px[p] = 1.0f;
	int x0 = 4 + i * 2, y0 = 5 + i, x1 = 24 - i, y1 = 26 - i;
	for (int x = x0; x <= x1; x++)
		px[y0 * S + x] = px[y1 * S + x] = -1.0f;
	for (int y = y0; y <= y1; y++)
		px[y * S + x0] = px[y * S + x1] = -1.0f;
	for (int k = 0; k < 20; k++)
		px[(6 + k) * S + (6 + k + i) % S] = -1.0f;
}

/* Painting: a smooth two-colour gradient with a soft blob, per channel. */
static void make_painting(float *px, int i)
{
	float base[3] = {0.8f - 0.3f * i, -0.2f + 0.2f * i, 0.1f * i - 0.5f};
	for (int c = 0; c < 3; c++)
		for (int y = 0; y < S; y++)
			for (int x = 0; x < S; x++) {
				float dx = x - 16.0f - i, dy = y - 14.0f;
				float blob = expf(-(dx * dx + dy * dy) / 60.0f);
				float v = base[c] + 0.4f * (float)y / S - 0.8f * blob * (c == i % 3 ? -1.0f : 1.0f);
				px[(c * S + y) * S + x] = v > 1 ? 1 : v < -1 ? -1 : v;
			}
}

static float sketches[NPAIRS][S * S], paintings[NPAIRS][3 * S * S];
static uint8_t sketch_u8[S * S];

static void make_data(void)
{
	static int done;
	if (done)
		return;
	for (int i = 0; i < NPAIRS; i++) {
		make_sketch(sketches[i], i);
		make_painting(paintings[i], i);
	}
	for (int p = 0; p < S * S; p++)
		sketch_u8[p] = (uint8_t)((sketches[0][p] + 1.0f) * 127.5f);
	done = 1;
}

static char tmpdir[256];
static const char *tmp_path(const char *name)
{
	static char buf[8][512];
	static int k;
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/atelier-model-XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			exit(1);
		}
	}
	char *b = buf[k++ % 8];
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static int on_cuda(void) { return strncmp(am_device_name(), "cuda", 4) == 0; }

static am_status_t *st;
static am_trainer *trained;
static double first5, last5;

#define ASSERT_OK(expr)                                                                           \
	do {                                                                                      \
		int rc_ = (expr);                                                                 \
		if (rc_ != 0)                                                                     \
			TEST_FAIL_("%s: %s: %s", #expr, at_err_name(rc_), am_status_message(st)); \
	} while (0)

static void train_once(void)
{
	if (trained)
		return;
	make_data();
	st = st ? st : am_status_new();
	am_config c = tiny_config();
	trained = am_trainer_new(&c, st);
	if (!trained)
		TEST_FAIL_("am_trainer_new: %s", am_status_message(st));
	double recon[20];
	for (int i = 0; i < 20; i++) {
		am_losses l;
		ASSERT_OK(am_trainer_step(trained, sketches[i % NPAIRS], paintings[(i + 1) % NPAIRS], 1, &l, st));
		ASSERT_EQ_INT(l.step, i + 1);
		ASSERT(isfinite(l.gen_total) && isfinite(l.dis_total));
		recon[i] = l.recon_x_a + l.recon_x_b;
	}
	for (int i = 0; i < 5; i++) {
		first5 += recon[i] / 5;
		last5 += recon[15 + i] / 5;
	}
}

static am_style seed_style(uint64_t seed)
{
	am_style s;
	memset(&s, 0, sizeof s);
	s.kind = AM_STYLE_SEED;
	s.seed = seed;
	return s;
}

static void painting_u8(int i, uint8_t *rgb)
{
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++)
			for (int c = 0; c < 3; c++)
				rgb[(y * S + x) * 3 + c] =
					(uint8_t)((paintings[i][(c * S + y) * S + x] + 1.0f) * 127.5f);
}

static long file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Copies src to dst, truncated to len bytes (len < 0: whole), with byte at flip_at xored. */
static void copy_file(const char *src, const char *dst, long len, long flip_at, int xor_with)
{
	FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
	if (!in || !out)
		TEST_FAIL_("cannot copy %s", src);
	long i = 0;
	int ch;
	while ((ch = fgetc(in)) != EOF && (len < 0 || i < len)) {
		if (i == flip_at)
			ch ^= xor_with;
		fputc(ch, out);
		i++;
	}
	fclose(in);
	fclose(out);
}

/* ---- tests ---- */

TEST(config_defaults_and_json)
{
	st = st ? st : am_status_new();
	am_config c = am_config_default();
	ASSERT_EQ_INT(c.gen_dim, 64);
	ASSERT_EQ_INT(c.style_dim, 8);
	ASSERT_EQ_INT(c.n_downsample, 2);
	ASSERT_EQ_INT(c.n_res, 4);
	ASSERT_EQ_INT(c.mlp_dim, 256);
	ASSERT_EQ_INT(c.dis_dim, 64);
	ASSERT_EQ_INT(c.n_layer, 4);
	ASSERT_EQ_INT(c.num_scales, 3);
	ASSERT_OP_DBL(c.recon_x_w, ==, 10);
	ASSERT_OP_DBL(c.recon_x_cyc_w, ==, 10);
	ASSERT_OK(am_config_validate(&c, st));

	ASSERT_OK(am_config_from_json("{\"gen_dim\": 32, \"image_size\": 128, \"gan_w\": 2, \"pono\": false,"
				      " \"device\": \"cpu\", \"seed\": 99}",
				      &c, st));
	ASSERT_EQ_INT(c.gen_dim, 32);
	ASSERT_EQ_INT(c.image_size, 128);
	ASSERT_EQ_INT(c.pono, 0);
	ASSERT_EQ_INT(c.seed, 99);
	ASSERT_STREQ(c.device, "cpu");
	ASSERT_OP_DBL(c.gan_w, ==, 2);
	ASSERT_EQ_INT(c.style_dim, 8); /* untouched */

	char *before = am_config_to_json(&c);
	ASSERT_EQ_INT(am_config_from_json("{\"gen_dim\": 16, \"gen_dimm\": 3}", &c, st), AT_EINVAL);
	ASSERT_CONTAINS(am_status_message(st), "unknown model config key 'gen_dimm'");
	ASSERT_EQ_INT(c.gen_dim, 32); /* unchanged on error */
	ASSERT_EQ_INT(am_config_from_json("{\"gen_dim\": \"big\"}", &c, st), AT_EINVAL);
	ASSERT_CONTAINS(am_status_message(st), "expected an integer");
	ASSERT_EQ_INT(am_config_from_json("{\"gen_dim\": 0}", &c, st), AT_ERANGE);
	ASSERT_EQ_INT(am_config_from_json("{\"gen_dim\": ", &c, st), AT_EPARSE);
	ASSERT_EQ_INT(am_config_from_json("[1]", &c, st), AT_EINVAL);
	ASSERT_EQ_INT(am_config_from_json("{\"device\": \"tpu\"}", &c, st), AT_EINVAL);
	/* 32x32 cannot feed 3 discriminator scales of 4 layers. */
	ASSERT_EQ_INT(am_config_from_json("{\"image_size\": 32}", &c, st), AT_EINVAL);
	ASSERT_CONTAINS(am_status_message(st), "too small");
	ASSERT_EQ_INT(am_config_from_json("{\"image_size\": 130}", &c, st), AT_EINVAL);
	char *json = am_config_to_json(&c);
	ASSERT_STREQ(json, before); /* every failure above left c unchanged */
	free(before);

	am_config back = am_config_default();
	ASSERT_OK(am_config_from_json(json, &back, st));
	char *again = am_config_to_json(&back);
	ASSERT_STREQ(again, json);
	free(json);
	free(again);
	ASSERT_STREQ(am_status_message(st), "");
}

TEST(training_reduces_reconstruction)
{
	train_once();
	fprintf(stderr, "recon_x first 5 steps %.4f, last 5 %.4f (device %s)\n", first5, last5, am_device_name());
	ASSERT_OP_DBL(last5, <, first5);
	ASSERT_EQ_INT(am_trainer_steps(trained), 20);
}

TEST(step_rejects_bad_arguments)
{
	train_once();
	ASSERT_EQ_INT(am_trainer_step(trained, sketches[0], paintings[0], 0, NULL, st), AT_ERANGE);
	ASSERT_EQ_INT(am_trainer_step(trained, NULL, paintings[0], 1, NULL, st), AT_EINVAL);
	ASSERT_EQ_INT(am_trainer_steps(trained), 20);
	am_config bad = tiny_config();
	bad.image_size = 30;
	ASSERT(am_trainer_new(&bad, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EINVAL);
	if (!on_cuda()) {
		ASSERT(am_model_load("/nonexistent", "cuda", st) == NULL);
		ASSERT_EQ_INT(am_status_code(st), AT_EUNAVAILABLE);
	}
}

TEST(checkpoint_resumes_bit_for_bit)
{
	train_once();
	const char *path = tmp_path("a.ckpt");
	ASSERT_OK(am_trainer_save(trained, path, st));
	am_trainer *back = am_trainer_load(path, NULL, st);
	if (!back)
		TEST_FAIL_("am_trainer_load: %s", am_status_message(st));
	ASSERT_EQ_INT(am_trainer_steps(back), 20);
	am_config c1, c2;
	am_trainer_get_config(trained, &c1);
	am_trainer_get_config(back, &c2);
	ASSERT_EQ_INT(c2.gen_dim, c1.gen_dim);
	ASSERT_EQ_INT(c2.seed, c1.seed);

	static uint8_t o1[3 * 64 * 64], o2[3 * 64 * 64];
	am_style s = seed_style(3);
	ASSERT_OK(am_trainer_stylize(trained, sketch_u8, S, S, &s, o1, 64, 64, st));
	ASSERT_OK(am_trainer_stylize(back, sketch_u8, S, S, &s, o2, 64, 64, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);

	/* Same next step: weights, both Adam states and the RNG came back. */
	am_losses l1, l2;
	ASSERT_OK(am_trainer_save(trained, tmp_path("b.ckpt"), st));
	ASSERT_OK(am_trainer_step(trained, sketches[1], paintings[2], 1, &l1, st));
	ASSERT_OK(am_trainer_step(back, sketches[1], paintings[2], 1, &l2, st));
	ASSERT_EQ_INT(l2.step, 21);
	if (on_cuda()) {
		ASSERT_OP_DBL(fabs(l1.gen_total - l2.gen_total), <, 1e-3 * fabs(l1.gen_total));
	} else {
		ASSERT_OP_DBL(l1.gen_total, ==, l2.gen_total);
		ASSERT_OP_DBL(l1.dis_total, ==, l2.dis_total);
		ASSERT_OK(am_trainer_stylize(trained, sketch_u8, S, S, &s, o1, 64, 64, st));
		ASSERT_OK(am_trainer_stylize(back, sketch_u8, S, S, &s, o2, 64, 64, st));
		ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	}
	am_trainer_free(back);
	/* Keep the shared trainer at the state the other tests expect. */
	am_trainer_free(trained);
	trained = am_trainer_load(tmp_path("b.ckpt"), NULL, st);
	ASSERT(trained != NULL);
}

TEST(export_matches_trainer)
{
	train_once();
	const char *path = tmp_path("m.atlr");
	ASSERT_OK(am_trainer_export(trained, path, st));
	ASSERT_OP_INT(file_size(path), <, file_size(tmp_path("a.ckpt")));
	am_model *m = am_model_load(path, NULL, st);
	if (!m)
		TEST_FAIL_("am_model_load: %s", am_status_message(st));
	am_config c;
	am_model_get_config(m, &c);
	ASSERT_EQ_INT(c.image_size, S);
	ASSERT_EQ_INT(c.style_dim, 4);
	/* Non-square output, resized from the model's 32x32. */
	static uint8_t o1[3 * 48 * 40], o2[3 * 48 * 40];
	for (uint64_t seed = 0; seed < 3; seed++) {
		am_style s = seed_style(seed);
		ASSERT_OK(am_trainer_stylize(trained, sketch_u8, S, S, &s, o1, 48, 40, st));
		ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &s, o2, 48, 40, st));
		ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	}
	am_model_free(m);
}

TEST(seed_styles_are_reproducible)
{
	train_once();
	am_model *m = am_model_load(tmp_path("m.atlr"), NULL, st);
	ASSERT(m != NULL);
	/* A larger sketch than the model: resized down. */
	static uint8_t big[100 * 90], a[3 * 64 * 64], b[3 * 64 * 64], c[3 * 64 * 64];
	for (int y = 0; y < 90; y++)
		for (int x = 0; x < 100; x++)
			big[y * 100 + x] = sketch_u8[(y * S / 90) * S + x * S / 100];
	am_style s1 = seed_style(1), s1b = seed_style(1), s2 = seed_style(2);
	ASSERT_OK(am_model_stylize(m, big, 100, 90, &s1, a, 64, 64, st));
	ASSERT_OK(am_model_stylize(m, big, 100, 90, &s1b, b, 64, 64, st));
	ASSERT_OK(am_model_stylize(m, big, 100, 90, &s2, c, 64, 64, st));
	ASSERT(memcmp(a, b, sizeof a) == 0);
	ASSERT(memcmp(a, c, sizeof a) != 0);
	float k1[4], k2[4];
	ASSERT_OK(am_model_style_code(m, &s1, k1, 4, st));
	ASSERT_OK(am_model_style_code(m, &s1b, k2, 4, st));
	ASSERT(memcmp(k1, k2, sizeof k1) == 0);
	ASSERT_EQ_INT(am_model_style_code(m, &s1, k1, 3, st), AT_EINVAL);
	am_model_free(m);
}

/* The inference rewrites (models/munit.cpp, fast()) compute the training
 * graph's function: same bytes up to one level of rounding, same float
 * reconstruction error to 1e-4 relative. */
TEST(model_fast_paths)
{
	train_once();
	am_model *m = am_model_load(tmp_path("m.atlr"), NULL, st);
	ASSERT(m != NULL);
	static uint8_t ref[3 * S * S], fast[3 * S * S], plain[3 * S * S];
	painting_u8(3, ref);
	double e_fast, e_plain;
	int differ = 0;
	for (uint64_t seed = 0; seed < 3; seed++) {
		am_style s = seed_style(seed);
		am_set_fast_paths(1);
		ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &s, fast, S, S, st));
		am_set_fast_paths(0);
		ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &s, plain, S, S, st));
		for (size_t i = 0; i < sizeof fast; i++) {
			ASSERT_OP_INT(abs((int)fast[i] - (int)plain[i]), <=, 1);
			differ += fast[i] != plain[i];
		}
	}
	ASSERT_OP_INT(differ, <, (int)sizeof fast / 100);
	am_set_fast_paths(0);
	ASSERT_OK(am_model_recon_error(m, ref, S, S, &e_plain, st));
	am_set_fast_paths(1);
	ASSERT_OK(am_model_recon_error(m, ref, S, S, &e_fast, st));
	ASSERT_OP_DBL(e_plain, >, 0);
	ASSERT_OP_DBL(fabs(e_fast - e_plain), <, 1e-4 * e_plain);
	am_model_free(m);
}

TEST(reference_and_mixed_styles)
{
	train_once();
	am_model *m = am_model_load(tmp_path("m.atlr"), NULL, st);
	ASSERT(m != NULL);
	static uint8_t ref[3 * S * S], o_ref[3 * S * S], o_code[3 * S * S], o_a[3 * S * S], o_b[3 * S * S],
		o_mix[3 * S * S], o_m0[3 * S * S], o_m1[3 * S * S];
	painting_u8(2, ref);
	am_style r;
	memset(&r, 0, sizeof r);
	r.kind = AM_STYLE_REFERENCE;
	r.rgb = ref;
	r.w = S;
	r.h = S;
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &r, o_ref, S, S, st));

	/* The reference's code, given back explicitly, gives the same image. */
	float code[4];
	ASSERT_OK(am_model_style_code(m, &r, code, 4, st));
	am_style k;
	memset(&k, 0, sizeof k);
	k.kind = AM_STYLE_CODE;
	k.code = code;
	k.code_len = 4;
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &k, o_code, S, S, st));
	ASSERT(memcmp(o_ref, o_code, sizeof o_ref) == 0);

	am_style a = seed_style(11), mix;
	memset(&mix, 0, sizeof mix);
	mix.kind = AM_STYLE_MIX;
	mix.a = &a;
	mix.b = &r;
	mix.alpha = 0.0f;
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &a, o_a, S, S, st));
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &mix, o_m0, S, S, st));
	ASSERT(memcmp(o_a, o_m0, sizeof o_a) == 0);
	mix.alpha = 1.0f;
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &mix, o_m1, S, S, st));
	ASSERT(memcmp(o_ref, o_m1, sizeof o_ref) == 0);
	mix.alpha = 0.5f;
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &mix, o_mix, S, S, st));
	ASSERT(memcmp(o_mix, o_a, sizeof o_a) != 0 && memcmp(o_mix, o_ref, sizeof o_ref) != 0);
	(void)o_b;

	/* Bad styles are argument errors, not crashes. */
	mix.alpha = 1.5f;
	ASSERT_EQ_INT(am_model_stylize(m, sketch_u8, S, S, &mix, o_mix, S, S, st), AT_EINVAL);
	ASSERT_CONTAINS(am_status_message(st), "alpha");
	mix.alpha = 0.5f;
	mix.b = &mix; /* a cycle */
	ASSERT_EQ_INT(am_model_stylize(m, sketch_u8, S, S, &mix, o_mix, S, S, st), AT_EINVAL);
	k.code_len = 5;
	ASSERT_EQ_INT(am_model_stylize(m, sketch_u8, S, S, &k, o_mix, S, S, st), AT_EINVAL);
	ASSERT_EQ_INT(am_model_stylize(m, sketch_u8, S, S, NULL, o_mix, S, S, st), AT_EINVAL);
	ASSERT_EQ_INT(am_model_stylize(m, sketch_u8, 0, S, &a, o_mix, S, S, st), AT_ERANGE);
	am_model_free(m);
}

TEST(broken_files_fail_cleanly)
{
	train_once();
	const char *good = tmp_path("m.atlr"), *bad = tmp_path("bad.atlr");
	long size = file_size(good);
	ASSERT_OP_INT(size, >, 100);

	copy_file(good, bad, size / 2, -1, 0);
	ASSERT(am_model_load(bad, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ECORRUPT);
	ASSERT_CONTAINS(am_status_message(st), "truncated");

	copy_file(good, bad, 30, -1, 0);
	ASSERT(am_model_load(bad, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ECORRUPT);
	ASSERT_CONTAINS(am_status_message(st), "truncated");

	copy_file(good, bad, -1, size - 100, 0x5a);
	ASSERT(am_model_load(bad, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ECORRUPT);
	ASSERT_CONTAINS(am_status_message(st), "sha256 mismatch");

	copy_file(good, bad, -1, 60, 0x01); /* inside the config JSON */
	ASSERT(am_model_load(bad, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ECORRUPT);

	copy_file(good, bad, -1, 8, 0x02); /* version 1 -> 3 */
	ASSERT(am_model_load(bad, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EUNSUPPORTED);
	ASSERT_CONTAINS(am_status_message(st), "unsupported format version 3");

	copy_file(good, bad, -1, 0, 0x20); /* 'A' -> 'a' */
	ASSERT(am_model_load(bad, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EUNSUPPORTED);
	ASSERT_CONTAINS(am_status_message(st), "bad magic");

	ASSERT(am_model_load(tmp_path("a.ckpt"), "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EUNSUPPORTED);
	ASSERT_CONTAINS(am_status_message(st), "is a training checkpoint, expected a serving export");
	ASSERT(am_trainer_load(good, "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EUNSUPPORTED);

	ASSERT(am_model_load(tmp_path("missing"), "cpu", st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ENOTFOUND);

	/* A different architecture cannot warm-start this one. */
	am_config other = tiny_config();
	other.gen_dim = 16;
	am_trainer *t = am_trainer_new(&other, st);
	ASSERT(t != NULL);
	ASSERT_EQ_INT(am_trainer_warm_start(t, good, st), AT_ECONFLICT);
	ASSERT_CONTAINS(am_status_message(st), "gen_dim is 8 in the file, 16 here");
	am_trainer_free(t);

	/* A failed save leaves no file and no temp file behind. */
	ASSERT_EQ_INT(am_trainer_save(trained, tmp_path("no/such/dir/x.ckpt"), st), AT_ENOTFOUND);
}

TEST(warm_start_from_export_and_checkpoint)
{
	train_once();
	am_config c = tiny_config();
	c.seed = 1234; /* different fresh weights */
	c.lr = 1e-4;   /* training settings may differ */
	am_trainer *t = am_trainer_new(&c, st);
	ASSERT(t != NULL);
	static uint8_t o1[3 * S * S], o2[3 * S * S];
	am_style s = seed_style(5);
	ASSERT_OK(am_trainer_stylize(trained, sketch_u8, S, S, &s, o1, S, S, st));
	ASSERT_OK(am_trainer_stylize(t, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) != 0);
	ASSERT_OK(am_trainer_export(trained, tmp_path("m2.atlr"), st));
	ASSERT_OK(am_trainer_warm_start(t, tmp_path("m2.atlr"), st));
	ASSERT_EQ_INT(am_trainer_steps(t), 0);
	ASSERT_OK(am_trainer_stylize(t, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	am_losses l;
	ASSERT_OK(am_trainer_step(t, sketches[0], paintings[0], 1, &l, st));
	ASSERT(isfinite(l.gen_total));
	am_trainer_free(t);

	t = am_trainer_new(&c, st);
	ASSERT(t != NULL);
	ASSERT_OK(am_trainer_save(trained, tmp_path("c.ckpt"), st));
	ASSERT_OK(am_trainer_warm_start(t, tmp_path("c.ckpt"), st));
	ASSERT_OK(am_trainer_stylize(t, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	am_trainer_free(t);
}

/*
 * ema_decay > 0: exports and am_trainer_stylize use the generators' moving
 * average, which differs from the live weights once training moves them;
 * a checkpoint carries the average (resume is bit for bit, and continues
 * it); a warm start from a file without one starts it from the weights.
 */
TEST(ema_is_exported_and_resumed)
{
	train_once();
	am_config c = tiny_config();
	c.ema_decay = 0.99;
	am_trainer *e = am_trainer_new(&c, st), *plain = am_trainer_new(&c, st);
	ASSERT(e && plain);
	for (int i = 0; i < 12; i++)
		ASSERT_OK(am_trainer_step(e, sketches[i % NPAIRS], paintings[(i + 1) % NPAIRS], 1, NULL, st));
	static uint8_t o1[3 * S * S], o2[3 * S * S];
	am_style s = seed_style(2);
	/* Same seed, same steps, no average: the live weights paint otherwise. */
	am_config cp = c;
	cp.ema_decay = 0;
	am_trainer_free(plain);
	plain = am_trainer_new(&cp, st);
	ASSERT(plain != NULL);
	for (int i = 0; i < 12; i++)
		ASSERT_OK(am_trainer_step(plain, sketches[i % NPAIRS], paintings[(i + 1) % NPAIRS], 1, NULL, st));
	ASSERT_OK(am_trainer_stylize(e, sketch_u8, S, S, &s, o1, S, S, st));
	ASSERT_OK(am_trainer_stylize(plain, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) != 0);
	/* The export is the average. */
	ASSERT_OK(am_trainer_export(e, tmp_path("ema.atlr"), st));
	am_model *m = am_model_load(tmp_path("ema.atlr"), NULL, st);
	ASSERT(m != NULL);
	ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	am_model_free(m);
	/* A checkpoint carries it; the next step updates both alike. */
	ASSERT_OK(am_trainer_save(e, tmp_path("ema.ckpt"), st));
	am_trainer *back = am_trainer_load(tmp_path("ema.ckpt"), NULL, st);
	ASSERT(back != NULL);
	ASSERT_OK(am_trainer_stylize(back, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	if (!on_cuda()) {
		ASSERT_OK(am_trainer_step(e, sketches[0], paintings[1], 1, NULL, st));
		ASSERT_OK(am_trainer_step(back, sketches[0], paintings[1], 1, NULL, st));
		ASSERT_OK(am_trainer_stylize(e, sketch_u8, S, S, &s, o1, S, S, st));
		ASSERT_OK(am_trainer_stylize(back, sketch_u8, S, S, &s, o2, S, S, st));
		ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	}
	/* Warm start from a checkpoint written without an average (ema_decay 0):
	 * the average starts at the weights, so it paints as they do. */
	ASSERT_OK(am_trainer_save(trained, tmp_path("noema.ckpt"), st));
	am_trainer *w = am_trainer_new(&c, st);
	ASSERT(w != NULL);
	ASSERT_OK(am_trainer_warm_start(w, tmp_path("noema.ckpt"), st));
	ASSERT_OK(am_trainer_stylize(trained, sketch_u8, S, S, &s, o1, S, S, st));
	ASSERT_OK(am_trainer_stylize(w, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	/* ... and from one written with it, the average comes back. */
	ASSERT_OK(am_trainer_warm_start(w, tmp_path("ema.ckpt"), st));
	am_trainer *again = am_trainer_load(tmp_path("ema.ckpt"), NULL, st);
	ASSERT(again != NULL);
	ASSERT_OK(am_trainer_stylize(again, sketch_u8, S, S, &s, o1, S, S, st));
	ASSERT_OK(am_trainer_stylize(w, sketch_u8, S, S, &s, o2, S, S, st));
	ASSERT(memcmp(o1, o2, sizeof o1) == 0);
	am_trainer_free(again);
	am_trainer_free(w);
	am_trainer_free(back);
	am_trainer_free(e);
	am_trainer_free(plain);
}

TEST(evaluation_scores)
{
	train_once();
	static uint8_t rgb[3 * S * S], blank[3 * S * S];
	for (int p = 0; p < S * S; p++)
		rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = sketch_u8[p];
	memset(blank, 200, sizeof blank);
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, rgb, S, S, 1), ==, 1.0);
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, blank, S, S, 1), ==, 0.0);
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, rgb, 0, S, 1), <, 0);

	/* Shifted by one pixel: perfect within tolerance 1, imperfect at 0. */
	static uint8_t shifted[3 * S * S];
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++)
			for (int c = 0; c < 3; c++)
				shifted[(y * S + x) * 3 + c] = sketch_u8[y * S + (x > 0 ? x - 1 : 0)];
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, shifted, S, S, 1), >, 0.95);
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, shifted, S, S, 0), <, 0.9);

	/* Eight stylizations by seed: diverse, and a score for the model's output. */
	am_model *m = am_model_load(tmp_path("m.atlr"), NULL, st);
	ASSERT(m != NULL);
	static uint8_t outs[8][3 * S * S], reals[8][3 * S * S], noise[8][3 * S * S];
	for (int i = 0; i < 8; i++) {
		am_style s = seed_style(100 + i);
		ASSERT_OK(am_model_stylize(m, sketch_u8, S, S, &s, outs[i], S, S, st));
		painting_u8(i % NPAIRS, reals[i]);
		for (int p = 0; p < 3 * S * S; p++)
			noise[i][p] = (uint8_t)(rnd() & 0xff);
	}
	double f1 = am_edge_f1(sketch_u8, outs[0], S, S, 2);
	ASSERT(f1 >= 0 && f1 <= 1);
	double div = -1, ch = am_content_chamfer(sketch_u8, outs[0], S, S);
	ASSERT_OK(am_diversity(&outs[0][0], 8, S, S, &div, st));
	ASSERT_OP_DBL(div, >, 0);
	ASSERT_OP_DBL(ch, >=, 0);
	am_interval kid;
	ASSERT_OK(am_kid(&outs[0][0], 8, &reals[0][0], 8, S, S, &kid, st));
	ASSERT(isfinite(kid.value) && kid.lo <= kid.hi);

	/* MMD: real vs real is smaller than real vs noise. */
	double near = 0, far = 0;
	ASSERT_OK(am_realism_mmd(&reals[4][0], 4, &reals[0][0], 4, S, S, &near, st));
	ASSERT_OK(am_realism_mmd(&noise[0][0], 8, &reals[0][0], 8, S, S, &far, st));
	fprintf(stderr, "mmd real/real %.4f, noise/real %.4f, edge f1 %.3f\n", near, far, f1);
	ASSERT_OP_DBL(near, <, far);
	ASSERT_EQ_INT(am_realism_mmd(&noise[0][0], 1, &reals[0][0], 8, S, S, &far, st), AT_EINVAL);

	double err = -1;
	ASSERT_OK(am_model_recon_error(m, reals[0], S, S, &err, st));
	ASSERT(err >= 0 && err <= 1);
	am_model_free(m);
}

/* ---- metrics on crafted images (no model) ---- */

/* A "painting" of one law: a random two-colour gradient with a soft blob. */
static void law_painting(uint8_t *rgb, uint32_t seed)
{
	uint32_t save = rng_state;
	rng_state = seed;
	float base[3], tilt = (float)(rnd() % 100) / 100.0f, cx = 8 + rnd() % 16, cy = 8 + rnd() % 16;
	for (int c = 0; c < 3; c++)
		base[c] = 60 + (float)(rnd() % 140);
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++) {
			float dx = x - cx, dy = y - cy, blob = expf(-(dx * dx + dy * dy) / 40.0f);
			for (int c = 0; c < 3; c++) {
				float v = base[c] + 50.0f * tilt * (float)y / S - 50.0f * blob;
				rgb[(y * S + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		}
	rng_state = save;
}

/* Another law: high-contrast stripes of random period and phase. */
static void law_stripes(uint8_t *rgb, uint32_t seed)
{
	uint32_t save = rng_state;
	rng_state = seed;
	int period = 2 + rnd() % 4, phase = rnd() % 8;
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++)
			for (int c = 0; c < 3; c++)
				rgb[(y * S + x) * 3 + c] = ((x + y + phase) / period) % 2 ? 250 : (uint8_t)(20 * c);
	rng_state = save;
}

TEST(metrics_on_crafted_images)
{
	make_data();
	enum { N = 24 };
	static uint8_t a[N][3 * S * S], b[N][3 * S * S], other[N][3 * S * S];
	for (int i = 0; i < N; i++) {
		law_painting(a[i], 1000 + i);
		law_painting(b[i], 5000 + i);
		law_stripes(other[i], 9000 + i);
	}
	am_interval same, law, apart;
	ASSERT_OK(am_kid(&a[0][0], N, &a[0][0], N, S, S, &same, st));
	ASSERT_OK(am_kid(&a[0][0], N, &b[0][0], N, S, S, &law, st));
	ASSERT_OK(am_kid(&other[0][0], N, &a[0][0], N, S, S, &apart, st));
	fprintf(stderr, "kid same %.4g [%.4g, %.4g], same law %.4g [%.4g, %.4g], apart %.4g [%.4g, %.4g]\n", same.value,
		same.lo, same.hi, law.value, law.lo, law.hi, apart.value, apart.lo, apart.hi);
	/* identical sets: ~0 and the interval holds 0 */
	ASSERT_OP_DBL(fabs(same.value), <, 0.05 * apart.value);
	ASSERT_OP_DBL(same.lo, <=, 0);
	ASSERT_OP_DBL(same.hi, >=, 0);
	/* two draws of one law: small, interval holds 0 */
	ASSERT_OP_DBL(law.lo, <=, 0);
	ASSERT_OP_DBL(law.hi, >=, 0);
	ASSERT_OP_DBL(law.value, <, 0.1 * apart.value);
	/* different laws: clearly positive, the whole interval above 0 */
	ASSERT_OP_DBL(apart.lo, >, 0);
	ASSERT_OP_DBL(apart.value, >=, apart.lo);
	ASSERT_OP_DBL(apart.value, <=, apart.hi);
	ASSERT_EQ_INT(am_kid(&a[0][0], 1, &b[0][0], N, S, S, &same, st), AT_EINVAL);

	/* diversity: identical outputs 0, different ones > 0 */
	static uint8_t twins[4][3 * S * S];
	for (int i = 0; i < 4; i++)
		memcpy(twins[i], a[0], sizeof twins[i]);
	double d_twins = -1, d_a = -1, d_mixed = -1;
	ASSERT_OK(am_diversity(&twins[0][0], 4, S, S, &d_twins, st));
	ASSERT_OK(am_diversity(&a[0][0], 4, S, S, &d_a, st));
	memcpy(twins[1], other[0], sizeof twins[1]);
	ASSERT_OK(am_diversity(&twins[0][0], 2, S, S, &d_mixed, st));
	fprintf(stderr, "diversity twins %.4g, one law %.4g, painting vs stripes %.4g\n", d_twins, d_a, d_mixed);
	ASSERT_OP_DBL(d_twins, ==, 0);
	ASSERT_OP_DBL(d_a, >, 0);
	ASSERT_OP_DBL(d_mixed, >, 0);
	ASSERT_OK(am_diversity(&a[0][0], 1, S, S, &d_a, st));
	ASSERT_OP_DBL(d_a, ==, 0);

	/* content: an output that draws the sketch's lines (blue on beige) beats one
	 * that draws them 2 px off, which beats noise, which beats a flat output */
	static uint8_t lines[3 * S * S], off2[3 * S * S], flat[3 * S * S], noise[3 * S * S];
	for (int y = 0; y < S; y++)
		for (int x = 0; x < S; x++) {
			int ink = sketch_u8[y * S + x] < 128, ink2 = x >= 2 && sketch_u8[y * S + x - 2] < 128;
			uint8_t *p = lines + (y * S + x) * 3, *q = off2 + (y * S + x) * 3;
			p[0] = q[0] = 230, p[1] = q[1] = 210, p[2] = q[2] = 170;
			if (ink)
				p[0] = 30, p[1] = 40, p[2] = 120;
			if (ink2)
				q[0] = 30, q[1] = 40, q[2] = 120;
		}
	memset(flat, 140, sizeof flat);
	for (size_t i = 0; i < sizeof noise; i++)
		noise[i] = (uint8_t)(rnd() & 0xff);
	double c_lines = am_content_chamfer(sketch_u8, lines, S, S), c_off = am_content_chamfer(sketch_u8, off2, S, S);
	double c_noise = am_content_chamfer(sketch_u8, noise, S, S), c_flat = am_content_chamfer(sketch_u8, flat, S, S);
	fprintf(stderr, "chamfer lines %.3f, 2 px off %.3f, noise %.3f, flat %.3f\n", c_lines, c_off, c_noise, c_flat);
	ASSERT_OP_DBL(c_lines, <, 0.5);
	ASSERT_OP_DBL(c_off, >, c_lines);
	ASSERT_OP_DBL(c_off, <, 3.0);
	ASSERT_OP_DBL(c_noise, >, c_off);
	ASSERT_OP_DBL(c_flat, >, c_noise);
	ASSERT_OP_DBL(c_flat, ==, sqrt(2.0 * S * S));
	ASSERT_OP_DBL(am_content_chamfer(sketch_u8, lines, 0, S), <, 0);
	/* content_f1 (tolerance 1): the drawn lines score 1, 2 px off less, flat 0 */
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, lines, S, S, 1), >, 0.95);
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, off2, S, S, 1), <, 0.9);
	ASSERT_OP_DBL(am_edge_f1(sketch_u8, flat, S, S, 1), ==, 0);
}

/*
 * The process group's C ABI on a group of one (two-rank groups run as two
 * processes in tests/test_gang.py): refusals, and that averaging over one
 * rank changes no bit — the hooks in the trainer's step are exact copies.
 */
TEST(dist_group_of_one_changes_nothing)
{
	ASSERT(am_dist_listen(NULL, 0, 2, 1000, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EINVAL);
	ASSERT(am_dist_listen("127.0.0.1", 0, 0, 1000, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ERANGE);
	ASSERT(am_dist_listen("127.0.0.1", 0, 2, 10, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ERANGE);
	ASSERT(am_dist_connect("127.0.0.1", 1234, 0, 2, 1000, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_EINVAL);
	ASSERT(am_dist_connect("127.0.0.1", 0, 1, 2, 1000, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ERANGE);
	ASSERT(am_dist_connect("127.0.0.1", 1234, 2, 2, 1000, st) == NULL);
	ASSERT_EQ_INT(am_status_code(st), AT_ERANGE);

	am_dist *d = am_dist_listen("127.0.0.1", 0, 1, 5000, st);
	if (!d)
		TEST_FAIL_("am_dist_listen: %s", am_status_message(st));
	ASSERT_OP_INT(am_dist_port(d), >, 0);
	am_config c = tiny_config();
	am_trainer *lone = am_trainer_new(&c, st), *grouped = am_trainer_new(&c, st);
	ASSERT(lone && grouped);
	ASSERT_EQ_INT(am_dist_attach(d, grouped, st), AT_EINVAL); /* not joined yet */
	ASSERT_CONTAINS(am_status_message(st), "am_dist_join");
	ASSERT_OK(am_dist_join(d, "127.0.0.1", st));
	ASSERT_EQ_INT(am_dist_join(d, "127.0.0.1", st), AT_EINVAL);
	ASSERT_EQ_INT(am_dist_rank(d), 0);
	ASSERT_EQ_INT(am_dist_world(d), 1);
	ASSERT_OK(am_dist_attach(d, grouped, st));
	ASSERT_OK(am_dist_barrier(d, st));
	double v[2] = {1.5, -2.25};
	ASSERT_OK(am_dist_mean(d, v, 2, st));
	ASSERT_OP_DBL(v[0], ==, 1.5);
	ASSERT_OP_DBL(v[1], ==, -2.25);
	for (int i = 0; i < 3; i++) {
		am_losses a, b;
		ASSERT_OK(am_trainer_step(lone, sketches[0], paintings[1], 2, &a, st));
		ASSERT_OK(am_trainer_step(grouped, sketches[0], paintings[1], 2, &b, st));
		if (on_cuda()) {
			ASSERT_OP_DBL(fabs(a.gen_total - b.gen_total), <, 1e-3 * fabs(a.gen_total));
		} else {
			ASSERT_OP_DBL(a.gen_total, ==, b.gen_total);
			ASSERT_OP_DBL(a.dis_total, ==, b.dis_total);
		}
	}
	am_dist_stats ds;
	am_dist_get_stats(d, &ds);
	ASSERT_EQ_INT(ds.allreduces, 3 * 3 + 1); /* 3 a step, and the mean above */
	ASSERT_OP_INT(ds.bytes, >, 1000);
	/* The trainer holds its own reference to the group: freeing the handle first is fine. */
	am_dist_free(d);
	am_losses l;
	ASSERT_OK(am_trainer_step(grouped, sketches[0], paintings[1], 2, &l, st));
	ASSERT_EQ_INT(l.step, 4);
	am_trainer_free(lone);
	am_trainer_free(grouped);
	am_dist_free(NULL);
	am_dist_get_stats(NULL, &ds);
	ASSERT_EQ_INT(ds.allreduces, 0);

	/* Nobody listens: the store connection fails within its timeout, with a code. */
	int port = 0;
	am_dist *probe = am_dist_listen("127.0.0.1", 0, 2, 1000, st);
	ASSERT(probe != NULL);
	port = am_dist_port(probe);
	am_dist_free(probe);
	am_dist *none = am_dist_connect("127.0.0.1", port, 1, 2, 300, st);
	ASSERT(none == NULL);
	ASSERT(am_status_code(st) == AT_ETIMEOUT || am_status_code(st) == AT_EUNAVAILABLE);
}

TEST(cleanup)
{
	am_trainer_free(trained);
	trained = NULL;
	am_status_free(st);
	st = NULL;
	if (tmpdir[0]) {
		const char *names[] = {"a.ckpt",   "b.ckpt",   "c.ckpt",   "m.atlr",    "m2.atlr",
				       "bad.atlr", "ema.atlr", "ema.ckpt", "noema.ckpt"};
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
			unlink(tmp_path(names[i]));
		ASSERT_EQ_INT(rmdir(tmpdir), 0); /* fails if a temp file was left behind */
	}
}

RUN_TESTS(config_defaults_and_json, training_reduces_reconstruction, step_rejects_bad_arguments,
	  checkpoint_resumes_bit_for_bit, export_matches_trainer, seed_styles_are_reproducible, model_fast_paths,
	  reference_and_mixed_styles, broken_files_fail_cleanly, warm_start_from_export_and_checkpoint,
	  ema_is_exported_and_resumed, evaluation_scores, metrics_on_crafted_images, dist_group_of_one_changes_nothing,
	  cleanup)
