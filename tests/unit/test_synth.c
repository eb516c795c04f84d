/*
 * test_synth.c — lib/synth.c and lib/sketchify.c: determinism, every class
 * drawn as a sketch and a painting that ingest accepts, sketches and paintings
 * never the same instance, uniform classes, colourful paintings whose style
 * families differ, pen widths that vary; the photo → sketch path producing
 * real lines.
 * ATELIER_SYNTH_DUMP=dir writes the pictures as PNGs for a human to look at;
 * ATELIER_SYNTH_SHEET=prefix writes contact sheets (prefix.png at 128 px,
 * prefix64.png at 64 px: a row per class, 4 sketches then 4 paintings, one
 * per family) and prints ms per sketch and per painting at 256 px.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "image.h"
#include "sketchify.h"
#include "synth.h"
#include "test.h"

static void dump(const char *name, uint64_t seed, const uint8_t *pix, int n, int c)
{
	const char *dir = getenv("ATELIER_SYNTH_DUMP");
	if (!dir)
		return;
	uint8_t *png;
	size_t len;
	if (image_encode_png(pix, n, n, c, 6, &png, &len) < 0)
		return;
	char path[512];
	snprintf(path, sizeof path, "%s/%s_%llu.png", dir, name, (unsigned long long)seed);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(png, 1, len, f);
		fclose(f);
	}
	free(png);
}

TEST(same_seed_same_bytes)
{
	int n = 128;
	uint8_t *a = malloc(n * n * 3), *b = malloc(n * n * 3);
	struct synth_info ia, ib;
	ASSERT_EQ_INT(synth_painting(42, n, a, &ia), 0);
	ASSERT_EQ_INT(synth_painting(42, n, b, &ib), 0);
	ASSERT(memcmp(a, b, n * n * 3) == 0);
	ASSERT_EQ_INT(ia.cls, ib.cls);
	ASSERT_EQ_INT(ia.family, ib.family);
	ASSERT(ia.family >= 0 && ia.family < SYNTH_FAMILIES);
	ASSERT_EQ_INT(synth_painting(43, n, b, NULL), 0);
	ASSERT(memcmp(a, b, n * n * 3) != 0);
	ASSERT_EQ_INT(synth_sketch(7, n, a, &ia), 0);
	ASSERT_EQ_INT(synth_sketch(7, n, b, &ib), 0);
	ASSERT(memcmp(a, b, n * n) == 0);
	ASSERT_EQ_INT(ia.family, -1);
	ASSERT_OP_DBL(ia.pen, ==, ib.pen);
	ASSERT_EQ_INT(synth_sketch(8, n, b, NULL), 0);
	ASSERT(memcmp(a, b, n * n) != 0);
	/* a forced class that equals the drawn one is the same picture */
	ASSERT_EQ_INT(synth_sketch_of(7, ia.cls, n, b, NULL), 0);
	ASSERT(memcmp(a, b, n * n) == 0);
	ASSERT_EQ_INT(synth_photo(9, n, a), 0);
	ASSERT_EQ_INT(synth_photo(9, n, b), 0);
	ASSERT(memcmp(a, b, n * n * 3) == 0);
	ASSERT_EQ_INT(synth_painting(1, 8, a, NULL), AT_EINVAL);
	ASSERT_EQ_INT(synth_sketch(1, 8, a, NULL), AT_EINVAL);
	ASSERT_EQ_INT(synth_sketch_of(1, SYNTH_CLASSES, n, a, NULL), AT_EINVAL);
	ASSERT_EQ_INT(synth_painting_of(1, 0, SYNTH_FAMILIES, n, a, NULL), AT_EINVAL);
	ASSERT_STREQ(synth_class_name(SYNTH_HOUSE), "house");
	ASSERT_STREQ(synth_class_name(SYNTH_CLASSES), "?");
	ASSERT_STREQ(synth_family_name(SYNTH_POSTER), "poster");
	free(a);
	free(b);
}

static void ingest_accepts(const uint8_t *pix, int n, int channels)
{
	uint8_t *png;
	size_t len;
	struct image_norm norm;
	struct image_opts o;
	char why[256] = "";
	image_opts_init(&o, channels == 1 ? IMAGE_SKETCH : IMAGE_PAINTING);
	ASSERT_EQ_INT(image_encode_png(pix, n, n, channels, 1, &png, &len), 0);
	int rc = image_normalize(png, len, &o, &norm, why, sizeof why);
	if (rc != 0)
		fprintf(stderr, "  ingest refused: %s\n", why);
	ASSERT_EQ_INT(rc, 0);
	image_norm_free(&norm);
	free(png);
}

/* The luma standard deviation; which of 8 hue bins hold over 2 % of the
 * pixels (over pixels with some saturation), as bits; how many distinct
 * colours at 5 bits a channel. */
static void colour_stats(const uint8_t *rgb, int n, double *luma_sd, int *hue_bins, int *distinct)
{
	double s = 0, s2 = 0;
	int bins[8] = {0}, npx = n * n;
	static uint8_t seen[1 << 15];
	memset(seen, 0, sizeof seen);
	*distinct = 0;
	for (int i = 0; i < npx; i++) {
		const uint8_t *p = rgb + i * 3;
		double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
		s += y;
		s2 += y * y;
		int q = (p[0] >> 3) << 10 | (p[1] >> 3) << 5 | p[2] >> 3;
		*distinct += !seen[q];
		seen[q] = 1;
		int mx = p[0] > p[1] ? (p[0] > p[2] ? p[0] : p[2]) : (p[1] > p[2] ? p[1] : p[2]);
		int mn = p[0] < p[1] ? (p[0] < p[2] ? p[0] : p[2]) : (p[1] < p[2] ? p[1] : p[2]);
		if (mx - mn < 20)
			continue;
		double h = mx == p[0]   ? fmod((double)(p[1] - p[2]) / (mx - mn) + 6, 6)
			   : mx == p[1] ? (double)(p[2] - p[0]) / (mx - mn) + 2
					: (double)(p[0] - p[1]) / (mx - mn) + 4;
		bins[(int)(h / 6 * 8) & 7]++;
	}
	*luma_sd = sqrt(s2 / npx - (s / npx) * (s / npx));
	*hue_bins = 0;
	for (int b = 0; b < 8; b++)
		*hue_bins |= (bins[b] > npx / 50) << b;
}

static int popcount8(int v)
{
	int k = 0;
	for (int b = 0; b < 8; b++)
		k += (v >> b) & 1;
	return k;
}

TEST(every_class_renders_and_ingest_accepts)
{
	static const int sizes[] = {32, 64, 256};
	uint8_t *gray = malloc(256 * 256), *rgb = malloc(256 * 256 * 3);
	for (int cls = 0; cls < SYNTH_CLASSES; cls++)
		for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
			for (uint64_t seed = 1; seed <= 3; seed++) {
				int n = sizes[z];
				struct synth_info info;
				ASSERT_EQ_INT(synth_sketch_of(seed * 101 + cls, cls, n, gray, &info), 0);
				ASSERT_EQ_INT(info.cls, cls);
				double ink = image_ink_ratio(gray, n, n, 1, 128);
				if (ink < 0.002 || ink > 0.95)
					fprintf(stderr, "  %s sketch at %d px, seed %llu: ink %.4f\n",
						synth_class_name(cls), n, (unsigned long long)seed, ink);
				ASSERT_OP_DBL(ink, >=, 0.002);
				ASSERT_OP_DBL(ink, <=, 0.95);
				/* the background is paper white */
				ASSERT_EQ_INT(gray[0], 255);
				ingest_accepts(gray, n, 1);
				int fam = (int)(seed + cls) % SYNTH_FAMILIES;
				ASSERT_EQ_INT(synth_painting_of(seed * 101 + cls, cls, fam, n, rgb, &info), 0);
				ASSERT_EQ_INT(info.family, fam);
				ingest_accepts(rgb, n, 3);
				dump(synth_class_name(cls), seed * 1000 + n, gray, n, 1);
			}
	free(gray);
	free(rgb);
}

TEST(sketches_and_paintings_never_share_an_instance)
{
	/* the streams are disjoint by construction (parity); check it holds
	 * over many seeds, and that same-seed pairs are not the same picture's
	 * class more often than chance */
	uint8_t buf[16 * 16 * 3];
	int same_class = 0;
	for (uint64_t seed = 0; seed < 400; seed++) {
		struct synth_info s, p;
		ASSERT_EQ_INT(synth_sketch(seed, 16, buf, &s), 0);
		ASSERT_EQ_INT(synth_painting(seed, 16, buf, &p), 0);
		ASSERT_EQ_INT((int)(s.stream & 1), 0);
		ASSERT_EQ_INT((int)(p.stream & 1), 1);
		ASSERT(s.stream != p.stream);
		same_class += s.cls == p.cls;
	}
	/* independent draws agree 1/SYNTH_CLASSES of the time (~36 of 400) */
	ASSERT_OP_INT(same_class, <, 400 / SYNTH_CLASSES * 2);
}

TEST(classes_are_uniform)
{
	int sk[SYNTH_CLASSES] = {0}, pa[SYNTH_CLASSES] = {0}, fam[SYNTH_FAMILIES] = {0}, draws = 800;
	uint8_t buf[16 * 16 * 3];
	for (int i = 0; i < draws; i++) {
		struct synth_info info;
		ASSERT_EQ_INT(synth_sketch((uint64_t)i * 1000003 + 1, 16, buf, &info), 0);
		sk[info.cls]++;
		ASSERT_EQ_INT(synth_painting((uint64_t)i * 1000003 + 1, 16, buf, &info), 0);
		pa[info.cls]++;
		fam[info.family]++;
	}
	/* chi-square, 10 degrees of freedom: 29.6 is p = 0.001 */
	double e = (double)draws / SYNTH_CLASSES, x_s = 0, x_p = 0;
	for (int c = 0; c < SYNTH_CLASSES; c++) {
		x_s += (sk[c] - e) * (sk[c] - e) / e;
		x_p += (pa[c] - e) * (pa[c] - e) / e;
	}
	ASSERT_OP_DBL(x_s, <, 29.6);
	ASSERT_OP_DBL(x_p, <, 29.6);
	for (int f = 0; f < SYNTH_FAMILIES; f++)
		ASSERT_OP_INT(fam[f], >, draws / SYNTH_FAMILIES / 2);
}

TEST(paintings_are_colourful_and_families_differ)
{
	int n = 64, per = 22;
	uint8_t *rgb = malloc(n * n * 3);
	double mean[SYNTH_FAMILIES][3] = {{0}}; /* saturation, value, warmth (r - b) */
	for (int f = 0; f < SYNTH_FAMILIES; f++) {
		int hues = 0;
		for (int i = 0; i < per; i++) {
			int cls = i % SYNTH_CLASSES;
			ASSERT_EQ_INT(synth_painting_of(500 + i, cls, f, n, rgb, NULL), 0);
			double sd;
			int bins, distinct;
			colour_stats(rgb, n, &sd, &bins, &distinct);
			if (sd < 12 || !bins || distinct < 64)
				fprintf(stderr, "  flat painting: %s %s luma sd %.1f, hue bins %x, %d colours\n",
					synth_class_name(cls), synth_family_name(f), sd, bins, distinct);
			/* not flat: contrast, some colour, and texture (many shades) */
			ASSERT_OP_DBL(sd, >=, 12);
			ASSERT_OP_INT(bins, !=, 0);
			ASSERT_OP_INT(distinct, >=, 64);
			hues |= bins;
			for (int p = 0; p < n * n; p++) {
				const uint8_t *q = rgb + p * 3;
				int mx = q[0] > q[1] ? (q[0] > q[2] ? q[0] : q[2]) : (q[1] > q[2] ? q[1] : q[2]);
				int mn = q[0] < q[1] ? (q[0] < q[2] ? q[0] : q[2]) : (q[1] < q[2] ? q[1] : q[2]);
				mean[f][0] += mx ? (double)(mx - mn) / mx : 0;
				mean[f][1] += mx / 255.0;
				mean[f][2] += (q[0] - q[2]) / 255.0;
			}
		}
		/* a family paints objects in many colours, not one */
		ASSERT_OP_INT(popcount8(hues), >=, 4);
		for (int k = 0; k < 3; k++)
			mean[f][k] /= (double)per * n * n;
		fprintf(stderr, "  %-13s saturation %.3f value %.3f warmth %+.3f\n", synth_family_name(f), mean[f][0],
			mean[f][1], mean[f][2]);
	}
	/* every two families are apart in saturation, value or warmth */
	for (int a = 0; a < SYNTH_FAMILIES; a++)
		for (int b = a + 1; b < SYNTH_FAMILIES; b++) {
			double d = 0;
			for (int k = 0; k < 3; k++)
				d += (mean[a][k] - mean[b][k]) * (mean[a][k] - mean[b][k]);
			ASSERT_OP_DBL(sqrt(d), >, 0.06);
		}
	/* the watercolour family is the cool one, impressionist and oil warm */
	ASSERT_OP_DBL(mean[SYNTH_WATERCOLOUR][2], <, mean[SYNTH_IMPRESSIONIST][2]);
	ASSERT_OP_DBL(mean[SYNTH_WATERCOLOUR][2], <, mean[SYNTH_OIL][2]);
	ASSERT_OP_DBL(mean[SYNTH_POSTER][0], >, mean[SYNTH_OIL][0]);
	free(rgb);
}

/* Mean stroke thickness: ink pixels per boundary pixel pair. */
static double thickness(const uint8_t *g, int n)
{
	long ink = 0, edge = 0;
	for (int y = 1; y < n - 1; y++)
		for (int x = 1; x < n - 1; x++) {
			if (g[y * n + x] >= 128)
				continue;
			ink++;
			edge += g[y * n + x - 1] >= 128 || g[y * n + x + 1] >= 128 || g[(y - 1) * n + x] >= 128 ||
				g[(y + 1) * n + x] >= 128;
		}
	return edge ? 2.0 * ink / edge : 0;
}

TEST(stroke_widths_vary)
{
	int n = 256;
	uint8_t *g = malloc(n * n);
	double pmin = 1e9, pmax = 0, thin = 0, thick = 0;
	int nthin = 0, nthick = 0;
	for (uint64_t seed = 1; seed <= 60; seed++) {
		struct synth_info info;
		ASSERT_EQ_INT(synth_sketch(seed, n, g, &info), 0);
		pmin = info.pen < pmin ? info.pen : pmin;
		pmax = info.pen > pmax ? info.pen : pmax;
		if (info.pen < 1.6) {
			thin += thickness(g, n);
			nthin++;
		} else if (info.pen > 2.8) {
			thick += thickness(g, n);
			nthick++;
		}
	}
	ASSERT_OP_DBL(pmin, <, 1.3);
	ASSERT_OP_DBL(pmax, >, 3.5);
	ASSERT_OP_INT(nthin, >, 5);
	ASSERT_OP_INT(nthick, >, 5);
	/* the pen shows in the pixels: thick pens draw visibly thicker lines
	 * (the estimate cannot go below 2 px: a 1 px line is all edge) */
	fprintf(stderr, "  measured thickness: thin pens %.2f px, thick pens %.2f px\n", thin / nthin, thick / nthick);
	ASSERT_OP_DBL(thick / nthick, >, 1.25 * thin / nthin);
	free(g);
}

/* Two threads drawing at once get exactly the serial bytes. */
struct worker {
	uint64_t seed0;
	uint8_t *out; /* 8 sketches then 8 paintings, 48 px */
	int rc;
};

static void *draw_some(void *arg)
{
	struct worker *w = arg;
	int n = 48;
	for (int i = 0; i < 8 && w->rc == 0; i++) {
		w->rc = synth_sketch(w->seed0 + i, n, w->out + (size_t)i * n * n * 3, NULL);
		if (w->rc == 0)
			w->rc = synth_painting(w->seed0 + i, n, w->out + (size_t)(8 + i) * n * n * 3, NULL);
	}
	return NULL;
}

TEST(threads_draw_the_serial_bytes)
{
	size_t per = (size_t)16 * 48 * 48 * 3;
	struct worker serial[2] = {{100, calloc(per, 1), 0}, {200, calloc(per, 1), 0}};
	struct worker par[2] = {{100, calloc(per, 1), 0}, {200, calloc(per, 1), 0}};
	draw_some(&serial[0]);
	draw_some(&serial[1]);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		ASSERT_EQ_INT(pthread_create(&t[i], NULL, draw_some, &par[i]), 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ_INT(pthread_join(t[i], NULL), 0);
		ASSERT_EQ_INT(par[i].rc, 0);
		ASSERT_EQ_INT(serial[i].rc, 0);
		ASSERT(memcmp(par[i].out, serial[i].out, per) == 0);
		free(par[i].out);
		free(serial[i].out);
	}
}

static void blit(uint8_t *sheet, int sw, int x0, int y0, const uint8_t *pix, int n, int channels)
{
	for (int y = 0; y < n; y++)
		for (int x = 0; x < n; x++)
			for (int c = 0; c < 3; c++)
				sheet[((size_t)(y0 + y) * sw + x0 + x) * 3 + c] =
					pix[((size_t)y * n + x) * channels + (channels == 3 ? c : 0)];
}

static void sheet(const char *path, int n)
{
	int gap = 4, cols = 8, sw = cols * (n + gap) + gap * 3, sh = SYNTH_CLASSES * (n + gap) + gap;
	uint8_t *s = malloc((size_t)sw * sh * 3), *pix = malloc((size_t)n * n * 3);
	memset(s, 90, (size_t)sw * sh * 3);
	for (int cls = 0; cls < SYNTH_CLASSES; cls++)
		for (int j = 0; j < cols; j++) {
			int x = gap + j * (n + gap) + (j >= 4 ? gap * 3 : 0), y = gap + cls * (n + gap);
			if (j < 4) {
				ASSERT_EQ_INT(synth_sketch_of((uint64_t)(cls * 31 + j), cls, n, pix, NULL), 0);
				blit(s, sw, x, y, pix, n, 1);
			} else {
				ASSERT_EQ_INT(synth_painting_of((uint64_t)(cls * 31 + j), cls, j - 4, n, pix, NULL), 0);
				blit(s, sw, x, y, pix, n, 3);
			}
		}
	uint8_t *png;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(s, sw, sh, 3, 6, &png, &len), 0);
	FILE *f = fopen(path, "wb");
	ASSERT(f != NULL);
	ASSERT_EQ_INT((int)fwrite(png, 1, len, f), (int)len);
	fclose(f);
	free(png);
	free(s);
	free(pix);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

TEST(contact_sheet_and_speed)
{
	const char *prefix = getenv("ATELIER_SYNTH_SHEET");
	if (!prefix)
		return;
	char path[512];
	snprintf(path, sizeof path, "%s.png", prefix);
	sheet(path, 128);
	snprintf(path, sizeof path, "%s64.png", prefix);
	sheet(path, 64);
	int n = 256, k = 200;
	uint8_t *pix = malloc(n * n * 3);
	double t0 = now_ms();
	for (int i = 0; i < k; i++)
		ASSERT_EQ_INT(synth_sketch((uint64_t)i, n, pix, NULL), 0);
	double t1 = now_ms();
	for (int i = 0; i < k; i++)
		ASSERT_EQ_INT(synth_painting((uint64_t)i, n, pix, NULL), 0);
	double t2 = now_ms();
	fprintf(stderr, "  at %d px: %.2f ms per sketch, %.2f ms per painting\n", n, (t1 - t0) / k, (t2 - t1) / k);
	free(pix);
}

TEST(photo_to_sketch_draws_lines)
{
	int n = 256;
	uint8_t *rgb = malloc(n * n * 3), *gray = malloc(n * n);
	for (uint64_t seed = 1; seed <= 6; seed++) {
		ASSERT_EQ_INT(synth_photo(seed, n, rgb), 0);
		double ink = 0;
		char why[256] = "";
		ASSERT_EQ_INT(sketchify(rgb, n, n, 3, NULL, NULL, gray, &ink, why, sizeof why), 0);
		dump("photo", seed, rgb, n, 3);
		dump("photo_sketch", seed, gray, n, 1);
		ASSERT_OP_DBL(ink, >, 0.01);
		ASSERT_OP_DBL(ink, <, 0.4);
		ASSERT_OP_DBL(fabs(ink - image_ink_ratio(gray, n, n, 1, 128)), <, 1e-12);
	}
	/* a non-square photo is centre-cropped to the square output */
	uint8_t *wide = malloc(300 * 300 * 3);
	ASSERT_EQ_INT(synth_photo(5, 300, wide), 0); /* and use its top 300x200 */
	struct sketchify_opts o;
	sketchify_opts_init(&o);
	o.size = 128;
	ASSERT_EQ_INT(sketchify(wide, 300, 200, 3, NULL, &o, gray, NULL, NULL, 0), 0);
	free(wide);
	free(rgb);
	free(gray);
}

TEST(blank_and_masked_out_photos_are_rejected)
{
	int n = 64;
	uint8_t *rgb = malloc(n * n * 3), *gray = malloc(n * n), *mask = calloc(n * n, 1);
	struct sketchify_opts o;
	sketchify_opts_init(&o);
	o.size = n;
	memset(rgb, 120, n * n * 3);
	char why[256] = "";
	double ink = -1;
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, NULL, &o, gray, &ink, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "blank");
	ASSERT_OP_DBL(ink, ==, 0);
	ASSERT_EQ_INT(synth_photo(3, n, rgb), 0);
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, mask, &o, gray, &ink, why, sizeof why), AT_EUNPROCESSABLE);
	/* the mask keeps a square: its outline is all that is left */
	for (int y = 16; y < 48; y++)
		for (int x = 16; x < 48; x++)
			mask[y * n + x] = 1;
	memset(rgb, 30, n * n * 3);
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, mask, &o, gray, &ink, why, sizeof why), 0);
	ASSERT_EQ_INT(gray[32 * n + 32], 255); /* inside: flat */
	ASSERT_EQ_INT(gray[2 * n + 2], 255);   /* outside: background */
	int on_outline = 0;
	for (int x = 12; x < 20; x++)
		on_outline |= gray[32 * n + x] == 0;
	ASSERT(on_outline);
	o.high = 1;
	o.low = 2;
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, NULL, &o, gray, NULL, why, sizeof why), AT_EINVAL);
	free(rgb);
	free(gray);
	free(mask);
}

RUN_TESTS(same_seed_same_bytes, every_class_renders_and_ingest_accepts, sketches_and_paintings_never_share_an_instance,
	  classes_are_uniform, paintings_are_colourful_and_families_differ, stroke_widths_vary,
	  threads_draw_the_serial_bytes, photo_to_sketch_draws_lines, blank_and_masked_out_photos_are_rejected,
	  contact_sheet_and_speed)
