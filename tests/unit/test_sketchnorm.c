/*
 * test_sketchnorm.c — lib/sketchnorm.c on crafted drawings: thin lines on big
 * canvases stay visible, the canvas size and the pen do not change what the
 * model sees, aspect survives the crop, blank input is an error, and a second
 * pass changes little. Figures are printed so that docs can quote them.
 * ATELIER_SKETCHNORM_DUMP=dir writes the outputs as PNGs for a human to see.
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "image.h"
#include "sketchnorm.h"
#include "test.h"

static void dump(const char *name, const uint8_t *pix, int n)
{
	const char *dir = getenv("ATELIER_SKETCHNORM_DUMP");
	if (!dir)
		return;
	uint8_t *png;
	size_t len;
	if (image_encode_png(pix, n, n, 1, 6, &png, &len) < 0)
		return;
	char path[512];
	snprintf(path, sizeof path, "%s/%s.png", dir, name);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(png, 1, len, f);
		fclose(f);
	}
	free(png);
}

/* ---- a tiny rasteriser: segments with a round pen, in canvas units ---- */

struct canvas {
	uint8_t *pix;
	int w, h;
};

static struct canvas canvas_new(int w, int h)
{
	struct canvas c = {malloc((size_t)w * h), w, h};
	memset(c.pix, 255, (size_t)w * h);
	return c;
}

/* A pixel is ink when its centre is within pen/2 of the segment, so a 1-px
 * pen gives a 1-px axis-aligned line. */
static void seg(struct canvas *c, double ax, double ay, double bx, double by, double pen)
{
	double r = pen / 2.0, dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
	int xa = (int)floor(fmin(ax, bx) - r - 1), xb = (int)ceil(fmax(ax, bx) + r + 1);
	int ya = (int)floor(fmin(ay, by) - r - 1), yb = (int)ceil(fmax(ay, by) + r + 1);
	for (int y = ya < 0 ? 0 : ya; y <= yb && y < c->h; y++)
		for (int x = xa < 0 ? 0 : xa; x <= xb && x < c->w; x++) {
			double px = x + 0.5, py = y + 0.5;
			double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
			t = t < 0 ? 0 : t > 1 ? 1 : t;
			double ex = ax + t * dx - px, ey = ay + t * dy - py;
			if (ex * ex + ey * ey <= r * r + 1e-9)
				c->pix[(size_t)y * c->w + x] = 0;
		}
}

/* The house of the browser test, in a unit square scaled to the canvas:
 * body, roof, door. */
static void house(struct canvas *c, double pen)
{
	double s = c->w;
	seg(c, .25 * s, .45 * s, .75 * s, .45 * s, pen);
	seg(c, .75 * s, .45 * s, .75 * s, .85 * s, pen);
	seg(c, .75 * s, .85 * s, .25 * s, .85 * s, pen);
	seg(c, .25 * s, .85 * s, .25 * s, .45 * s, pen);
	seg(c, .25 * s, .45 * s, .50 * s, .20 * s, pen);
	seg(c, .50 * s, .20 * s, .75 * s, .45 * s, pen);
	seg(c, .45 * s, .85 * s, .45 * s, .65 * s, pen);
	seg(c, .45 * s, .65 * s, .55 * s, .65 * s, pen);
	seg(c, .55 * s, .65 * s, .55 * s, .85 * s, pen);
}

/*
 * The stroke's width in output pixels where the house's left wall crosses
 * the output row through the middle of the body: the darkness summed across
 * the wall (a linear measure, so antialiased grey counts by its share).
 */
static double wall_width(const uint8_t *o, int n, const struct sketchnorm_info *in, double canvas)
{
	double xo = (.25 * canvas - in->crop_x) * in->scale, yo = (.65 * canvas - in->crop_y) * in->scale;
	int y = (int)yo, xc = (int)lround(xo);
	double sum = 0;
	for (int x = xc - 5; x <= xc + 5; x++)
		if (x >= 0 && x < n)
			sum += (255 - o[(size_t)y * n + x]) / 255.0;
	return sum;
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += abs((int)a[i] - (int)b[i]);
	return s / (double)n;
}

static int min_pixel(const uint8_t *a, size_t n)
{
	int m = 255;
	for (size_t i = 0; i < n; i++)
		m = a[i] < m ? a[i] : m;
	return m;
}

/* ---- tests ---- */

TEST(thin_line_on_big_canvas_is_visible)
{
	enum { N = 64 };
	struct canvas c = canvas_new(1024, 1024);
	house(&c, 1);
	uint8_t out[N * N];
	struct sketchnorm_info in;
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out, &in), 0);
	dump("house_1024_pen1", out, N);
	double ww = wall_width(out, N, &in, 1024);
	printf("1 px pen on 1024 canvas -> 64: stroke_in %.2f, wall width %.2f px, darkest %d, ink %.3f\n",
	       in.stroke_in, ww, min_pixel(out, N * N), in.ink_ratio);
	ASSERT_OP_DBL(in.stroke_in, <, 2.5);
	ASSERT_OP_DBL(ww, >=, 1.0);
	ASSERT_OP_INT(min_pixel(out, N * N), <, 60);
	/* the wall's darkest pixel is dark too, not only a corner */
	double xo = (.25 * 1024 - in.crop_x) * in.scale;
	int y = (int)((.65 * 1024 - in.crop_y) * in.scale), darkest = 255;
	for (int x = (int)xo - 3; x <= (int)xo + 3; x++)
		darkest = out[y * N + x] < darkest ? out[y * N + x] : darkest;
	ASSERT_OP_INT(darkest, <, 100);
	/* with plain image_fit the same drawing is nearly gone: what this fixes */
	uint8_t fit[N * N];
	ASSERT_EQ_INT(image_fit(c.pix, c.w, c.h, 1, fit, N), 0);
	printf("  image_fit of the same: darkest %d\n", min_pixel(fit, N * N));
	free(c.pix);
}

TEST(canvas_size_does_not_change_the_tensor)
{
	enum { N = 64 };
	/* the page's default pen (4 px at 512) scaled with the canvas */
	static const int sizes[] = {256, 512, 1024, 2048};
	uint8_t out[4][N * N];
	for (int i = 0; i < 4; i++) {
		struct canvas c = canvas_new(sizes[i], sizes[i]);
		house(&c, 4.0 * sizes[i] / 512);
		struct sketchnorm_info in;
		ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out[i], &in), 0);
		char name[64];
		snprintf(name, sizeof name, "house_%d", sizes[i]);
		dump(name, out[i], N);
		printf("canvas %4d pen %4.1f: work %d, stroke_in %.2f, wall %.2f px\n", sizes[i], 4.0 * sizes[i] / 512,
		       in.work_side, in.stroke_in, wall_width(out[i], N, &in, sizes[i]));
		free(c.pix);
	}
	for (int i = 1; i < 4; i++) {
		double d = mean_abs_diff(out[0], out[i], N * N);
		printf("mean |256 - %d| = %.2f gray levels\n", sizes[i], d);
		ASSERT_OP_DBL(d, <, 4.0); /* measured 2.3 .. 2.9 */
	}
}

TEST(pens_1_to_24_reach_the_same_band)
{
	enum { N = 64 };
	double lo = 1e9, hi = 0;
	for (int pen = 1; pen <= 24; pen++) {
		struct canvas c = canvas_new(512, 512);
		house(&c, pen);
		uint8_t out[N * N];
		struct sketchnorm_info in;
		ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out, &in), 0);
		double ww = wall_width(out, N, &in, 512);
		printf("pen %2d on 512: stroke_in %5.2f -> wall %.2f px at 64\n", pen, in.stroke_in, ww);
		if (pen == 1 || pen == 4 || pen == 24) {
			char name[64];
			snprintf(name, sizeof name, "house_512_pen%d", pen);
			dump(name, out, N);
		}
		lo = ww < lo ? ww : lo;
		hi = ww > hi ? ww : hi;
		free(c.pix);
	}
	printf("wall width band over pens 1..24: %.2f .. %.2f px (target %.2f)\n", lo, hi, 64 * SKETCHNORM_STROKE_FRAC);
	ASSERT_OP_DBL(lo, >=, 1.4); /* measured 1.60 .. 1.77 */
	ASSERT_OP_DBL(hi, <=, 2.0);
}

/* the bounding box of dark output pixels */
static void out_box(const uint8_t *o, int n, int *bw, int *bh)
{
	int x0 = n, y0 = n, x1 = -1, y1 = -1;
	for (int y = 0; y < n; y++)
		for (int x = 0; x < n; x++)
			if (o[y * n + x] < 128) {
				x0 = x < x0 ? x : x0;
				x1 = x > x1 ? x : x1;
				y0 = y < y0 ? y : y0;
				y1 = y > y1 ? y : y1;
			}
	*bw = x1 - x0 + 1;
	*bh = y1 - y0 + 1;
}

TEST(crop_keeps_aspect)
{
	enum { N = 64 };
	/* a 400×100 box, off centre, on a 512 canvas */
	struct canvas c = canvas_new(512, 512);
	seg(&c, 20, 300, 420, 300, 4);
	seg(&c, 420, 300, 420, 400, 4);
	seg(&c, 420, 400, 20, 400, 4);
	seg(&c, 20, 400, 20, 300, 4);
	uint8_t out[N * N];
	struct sketchnorm_info in;
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out, &in), 0);
	dump("wide", out, N);
	int bw, bh;
	out_box(out, N, &bw, &bh);
	printf("wide box: input bbox %dx%d, output ink box %dx%d\n", in.bbox_w, in.bbox_h, bw, bh);
	ASSERT_EQ_INT(in.bbox_w, 404);
	ASSERT_EQ_INT(in.bbox_h, 104);
	/* fills the width less the margins, keeps 4:1 */
	ASSERT_OP_INT(bw, >=, 50);
	ASSERT_OP_DBL(fabs((double)bw / bh - 404.0 / 104.0), <, 0.5);
	/* centred vertically */
	int top = 0;
	while (top < N && min_pixel(out + top * N, N) >= 128)
		top++;
	ASSERT_OP_INT(abs(top - (N - bh) / 2), <=, 1);
	free(c.pix);
}

TEST(blank_input_is_unprocessable)
{
	enum { N = 64 };
	struct canvas c = canvas_new(300, 200);
	uint8_t out[N * N];
	memset(out, 7, sizeof out);
	struct sketchnorm_info in;
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out, &in), AT_EUNPROCESSABLE);
	ASSERT_EQ_INT(out[0], 7); /* untouched */
	/* light pencil above the threshold is paper */
	memset(c.pix, 200, 300 * 200);
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out, &in), AT_EUNPROCESSABLE);
	/* caps and arguments */
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, 4, NULL, out, &in), AT_ERANGE);
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, SKETCHNORM_MAX_SIZE + 1, NULL, out, &in), AT_ERANGE);
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, 0, c.h, N, NULL, out, &in), AT_EINVAL);
	ASSERT_EQ_INT(sketchnorm_apply(NULL, c.w, c.h, N, NULL, out, &in), AT_EINVAL);
	/* a single dark pixel: a small dot, not a square flooded with ink */
	c.pix[100 * 300 + 150] = 0;
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, c.w, c.h, N, NULL, out, &in), 0);
	printf("one dark pixel: ink ratio %.3f\n", in.ink_ratio);
	ASSERT_OP_DBL(in.ink_ratio, <, 0.1);
	ASSERT_OP_DBL(in.ink_ratio, >, 0.0);
	free(c.pix);
}

TEST(second_pass_changes_little)
{
	/* the pipeline's own path: ingest stores 256, prepare and serving go to
	 * 64; and normalising a normalised 64 again */
	struct canvas c = canvas_new(512, 512);
	house(&c, 4);
	uint8_t s256[256 * 256], a[64 * 64], b[64 * 64], again[64 * 64];
	struct sketchnorm_info in;
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, 512, 512, 256, NULL, s256, &in), 0);
	printf("house at 256: stroke_in %.2f, wall %.2f px (target %.2f)\n", in.stroke_in,
	       wall_width(s256, 256, &in, 512), 256 * SKETCHNORM_STROKE_FRAC);
	dump("house_512_at256", s256, 256);
	ASSERT_EQ_INT(sketchnorm_apply(s256, 256, 256, 64, NULL, a, &in), 0);
	ASSERT_EQ_INT(sketchnorm_apply(c.pix, 512, 512, 64, NULL, b, &in), 0);
	ASSERT_EQ_INT(sketchnorm_apply(b, 64, 64, 64, NULL, again, &in), 0);
	printf("64 again: crop (%.2f, %.2f) side %.2f, stroke_in %.2f, passed through %d\n", in.crop_x, in.crop_y,
	       in.crop_side, in.stroke_in, in.passed_through);
	double d1 = mean_abs_diff(a, b, 64 * 64), d2 = mean_abs_diff(b, again, 64 * 64);
	printf("mean |(512->256->64) - (512->64)| = %.2f; mean |(64->64) - 64| = %.2f gray levels\n", d1, d2);
	ASSERT_OP_DBL(d1, <, 3.0); /* measured 1.3 */
	/* its own output at the same size is passed through: a fixed point */
	ASSERT_EQ_INT(in.passed_through, 1);
	ASSERT_OP_DBL(d2, ==, 0.0);
	/* shifted by 3 px it is drawn again, and lands back within a pixel */
	uint8_t shifted[64 * 64];
	memset(shifted, 255, sizeof shifted);
	for (int y = 0; y < 61; y++)
		memcpy(shifted + (y + 3) * 64, b + y * 64, 61);
	ASSERT_EQ_INT(sketchnorm_apply(shifted, 64, 64, 64, NULL, again, &in), 0);
	ASSERT_EQ_INT(in.passed_through, 0);
	double d3 = mean_abs_diff(b, again, 64 * 64);
	printf("mean |(64 shifted by 3 px -> 64) - 64| = %.2f gray levels\n", d3);
	ASSERT_OP_DBL(d3, <, 8.0);
	free(c.pix);
}

TEST(cost_is_bounded)
{
	/* a 2048 canvas at 64 and a 256 canvas at 256: the cases ingest and serving see */
	struct canvas big = canvas_new(2048, 2048), mid = canvas_new(256, 256);
	house(&big, 16);
	house(&mid, 2);
	uint8_t *o = malloc(256 * 256);
	struct timespec t0, t1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	for (int i = 0; i < 10; i++)
		ASSERT_EQ_INT(sketchnorm_apply(big.pix, 2048, 2048, 64, NULL, o, NULL), 0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	double per_big = ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9) / 10 * 1e3;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	for (int i = 0; i < 50; i++)
		ASSERT_EQ_INT(sketchnorm_apply(mid.pix, 256, 256, 256, NULL, o, NULL), 0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	double per_mid = ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9) / 50 * 1e3;
	printf("cost: 2048 canvas -> 64: %.2f ms; 256 canvas -> 256: %.2f ms (CPU)\n", per_big, per_mid);
	ASSERT_OP_DBL(per_big, <, 500); /* loose: sanitizer builds */
	ASSERT_OP_DBL(per_mid, <, 500);
	free(o);
	free(big.pix);
	free(mid.pix);
}

RUN_TESTS(thin_line_on_big_canvas_is_visible, canvas_size_does_not_change_the_tensor, pens_1_to_24_reach_the_same_band,
	  crop_keeps_aspect, blank_input_is_unprocessable, second_pass_changes_little, cost_is_bounded)
