/*
 * synth.c — see synth.h.
 *
 * Everything is drawn in floating point on a float RGB canvas and quantised
 * once at the end. Shapes are signed-distance functions, so their edges are
 * antialiased and the sketch that sketchify draws from them is clean. The
 * random stream is splitmix64: tiny, seedable and good enough for pictures.
 */
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sketchify.h"

/* ---- randomness ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double rng_range(struct rng *r, double a, double b)
{
	return a + (b - a) * rng_unit(r);
}

static int rng_int(struct rng *r, int n)
{
	return (int)(rng_next(r) % (uint64_t)n);
}

/* A stateless hash of lattice coordinates, for value noise. */
static double lattice(uint64_t seed, int x, int y)
{
	struct rng r = {seed ^ ((uint64_t)(uint32_t)x * 0x8da6b343ull) ^ ((uint64_t)(uint32_t)y * 0xd8163841ull)};
	return rng_unit(&r) * 2.0 - 1.0;
}

/* Smooth value noise in [-1, 1] with features about `scale` pixels wide. */
static double value_noise(uint64_t seed, double x, double y, double scale)
{
	x /= scale;
	y /= scale;
	int xi = (int)floor(x), yi = (int)floor(y);
	double fx = x - xi, fy = y - yi;
	fx = fx * fx * (3 - 2 * fx);
	fy = fy * fy * (3 - 2 * fy);
	double a = lattice(seed, xi, yi), b = lattice(seed, xi + 1, yi), c = lattice(seed, xi, yi + 1),
	       d = lattice(seed, xi + 1, yi + 1);
	return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
}

/* ---- canvas ---- */

struct canvas {
	int n;
	float *px; /* n*n*3, 0..1 */
};

static void blend(struct canvas *c, int x, int y, const double col[3], double a)
{
	if (a <= 0 || x < 0 || y < 0 || x >= c->n || y >= c->n)
		return;
	if (a > 1)
		a = 1;
	float *p = c->px + ((size_t)y * c->n + x) * 3;
	for (int k = 0; k < 3; k++)
		p[k] = (float)(p[k] * (1 - a) + col[k] * a);
}

static void quantise(const struct canvas *c, uint8_t *rgb)
{
	for (size_t i = 0; i < (size_t)c->n * c->n * 3; i++) {
		double v = c->px[i] * 255.0 + 0.5;
		rgb[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
}

static void hsv(double h, double s, double v, double out[3])
{
	h = fmod(h, 1.0) * 6.0;
	int i = (int)h;
	double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
	const double tab[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
	memcpy(out, tab[i % 6], sizeof tab[0]);
}

/* ---- shapes as signed distances (negative inside) ---- */

enum shape_kind { SH_CIRCLE, SH_RECT, SH_TRIANGLE, SH_BLOB, SH_KINDS };

struct shape {
	enum shape_kind kind;
	double cx, cy, r;     /* centre, size */
	double hw, hh, angle; /* rect half sizes, rotation */
	double tx[3], ty[3];  /* triangle */
	double amp[4], ph[4]; /* blob harmonics */
};

static double shape_sdf(const struct shape *s, double x, double y)
{
	double dx = x - s->cx, dy = y - s->cy;
	switch (s->kind) {
	case SH_CIRCLE:
		return sqrt(dx * dx + dy * dy) - s->r;
	case SH_RECT: {
		double c = cos(s->angle), sn = sin(s->angle);
		double u = fabs(dx * c + dy * sn) - s->hw, v = fabs(-dx * sn + dy * c) - s->hh;
		double ou = u > 0 ? u : 0, ov = v > 0 ? v : 0;
		return sqrt(ou * ou + ov * ov) + (u > v ? (u < 0 ? u : 0) : (v < 0 ? v : 0));
	}
	case SH_TRIANGLE: {
		double d = -1e9;
		for (int i = 0; i < 3; i++) {
			int j = (i + 1) % 3;
			double ex = s->tx[j] - s->tx[i], ey = s->ty[j] - s->ty[i], len = sqrt(ex * ex + ey * ey);
			/* vertices are counter-clockwise: outside is to the right */
			double e = ((x - s->tx[i]) * ey - (y - s->ty[i]) * ex) / (len > 0 ? len : 1);
			d = e > d ? e : d;
		}
		return d;
	}
	default: {
		double th = atan2(dy, dx), rr = s->r;
		for (int k = 0; k < 4; k++)
			rr += s->r * s->amp[k] * sin((k + 2) * th + s->ph[k]);
		return sqrt(dx * dx + dy * dy) - rr;
	}
	}
}

static void shape_random(struct rng *r, int n, struct shape *s)
{
	memset(s, 0, sizeof *s);
	s->kind = (enum shape_kind)rng_int(r, SH_KINDS);
	s->cx = rng_range(r, 0.2, 0.8) * n;
	s->cy = rng_range(r, 0.2, 0.8) * n;
	s->r = rng_range(r, 0.08, 0.22) * n;
	s->hw = rng_range(r, 0.06, 0.2) * n;
	s->hh = rng_range(r, 0.06, 0.2) * n;
	s->angle = rng_range(r, 0, M_PI);
	double a0 = rng_range(r, 0, 2 * M_PI);
	for (int i = 0; i < 3; i++) {
		/* counter-clockwise in image coordinates (y down) */
		double a = a0 - i * (2 * M_PI / 3) + rng_range(r, -0.3, 0.3);
		s->tx[i] = s->cx + cos(a) * s->r * 1.3;
		s->ty[i] = s->cy + sin(a) * s->r * 1.3;
	}
	for (int k = 0; k < 4; k++) {
		s->amp[k] = rng_range(r, 0, 0.12) / (k + 1);
		s->ph[k] = rng_range(r, 0, 2 * M_PI);
	}
}

static int check_args(int size, const uint8_t *rgb)
{
	return size >= 16 && size <= 4096 && rgb ? 0 : AT_EINVAL;
}

static int canvas_new(struct canvas *c, int n)
{
	c->n = n;
	c->px = malloc(sizeof(float) * (size_t)n * n * 3);
	return c->px ? 0 : AT_ENOMEM;
}

/* ---- paintings ---- */

static void brush_stroke(struct rng *r, struct canvas *c, const double col[3])
{
	int n = c->n;
	double x = rng_range(r, 0, n), y = rng_range(r, 0, n), a = rng_range(r, 0, 2 * M_PI);
	double width = rng_range(r, 1.5, 4.0) * n / 256.0, alpha = rng_range(r, 0.15, 0.35);
	int steps = 10 + rng_int(r, 30);
	for (int i = 0; i < steps; i++) {
		a += rng_range(r, -0.3, 0.3);
		x += cos(a) * 2;
		y += sin(a) * 2;
		int w = (int)ceil(width);
		for (int dy = -w; dy <= w; dy++)
			for (int dx = -w; dx <= w; dx++)
				if (dx * dx + dy * dy <= width * width)
					blend(c, (int)x + dx, (int)y + dy, col, alpha * 0.5);
	}
}

int synth_painting(uint64_t seed, int size, uint8_t *rgb)
{
	int rc = check_args(size, rgb);
	if (rc < 0)
		return rc;
	struct canvas c;
	if ((rc = canvas_new(&c, size)) < 0)
		return rc;
	struct rng r = {seed};
	int n = size;
	/* colour field: a gradient between two colours plus broad noise */
	double h0 = rng_unit(&r), c0[3], c1[3];
	hsv(h0, rng_range(&r, 0.2, 0.6), rng_range(&r, 0.55, 0.95), c0);
	hsv(h0 + rng_range(&r, 0.1, 0.4), rng_range(&r, 0.2, 0.6), rng_range(&r, 0.45, 0.9), c1);
	double ga = rng_range(&r, 0, 2 * M_PI), gx = cos(ga), gy = sin(ga);
	uint64_t nseed = rng_next(&r);
	for (int y = 0; y < n; y++) {
		for (int x = 0; x < n; x++) {
			double t = 0.5 + ((x - n / 2.0) * gx + (y - n / 2.0) * gy) / n;
			t += 0.15 * value_noise(nseed, x, y, n / 4.0);
			t = t < 0 ? 0 : t > 1 ? 1 : t;
			float *p = c.px + ((size_t)y * n + x) * 3;
			for (int k = 0; k < 3; k++)
				p[k] = (float)(c0[k] * (1 - t) + c1[k] * t);
		}
	}
	/* shapes: saturated colours away from the background's value, shaded */
	int nshapes = 3 + rng_int(&r, 4);
	for (int i = 0; i < nshapes; i++) {
		struct shape s;
		shape_random(&r, n, &s);
		double col[3], v = rng_unit(&r) < 0.5 ? rng_range(&r, 0.1, 0.35) : rng_range(&r, 0.75, 1.0);
		hsv(rng_unit(&r), rng_range(&r, 0.5, 1.0), v, col);
		double sx = rng_range(&r, -1, 1), sy = rng_range(&r, -1, 1), shade = rng_range(&r, 0.1, 0.3);
		for (int y = 0; y < n; y++) {
			for (int x = 0; x < n; x++) {
				double d = shape_sdf(&s, x + 0.5, y + 0.5);
				if (d > 1)
					continue;
				double t = ((x - s.cx) * sx + (y - s.cy) * sy) / (s.r + 1) * shade, px[3];
				for (int k = 0; k < 3; k++)
					px[k] = col[k] * (1 + t);
				blend(&c, x, y, px, 0.5 - d);
			}
		}
	}
	/* texture: fine noise and brush strokes */
	uint64_t tseed = rng_next(&r);
	for (int y = 0; y < n; y++) {
		for (int x = 0; x < n; x++) {
			double t = 0.03 * value_noise(tseed, x, y, 2.0) + 0.02 * value_noise(tseed + 1, x, y, 7.0);
			float *p = c.px + ((size_t)y * n + x) * 3;
			for (int k = 0; k < 3; k++)
				p[k] += (float)t;
		}
	}
	int nstrokes = 10 + rng_int(&r, 20);
	for (int i = 0; i < nstrokes; i++) {
		int x = rng_int(&r, n), y = rng_int(&r, n);
		const float *p = c.px + ((size_t)y * n + x) * 3;
		double col[3] = {p[0] * 0.9, p[1] * 0.9, p[2] * 0.9};
		brush_stroke(&r, &c, col);
	}
	quantise(&c, rgb);
	free(c.px);
	return 0;
}

int synth_pair(uint64_t seed, int size, uint8_t *rgb, uint8_t *gray)
{
	int rc = check_args(size, rgb);
	if (rc < 0 || !gray)
		return rc < 0 ? rc : AT_EINVAL;
	struct sketchify_opts o;
	sketchify_opts_init(&o);
	o.size = size;
	o.bg_threshold = 0; /* a painting has no background to drop */
	o.dilate = size >= 384 ? 2 : 1;
	/* A seed whose painting has no usable lines is re-drawn from a derived
	 * seed; 8 tries are plenty (every painting has shapes). */
	for (int attempt = 0; attempt < 8; attempt++) {
		struct rng r = {seed ^ (0x5851f42d4c957f2dull * (uint64_t)attempt)};
		uint64_t s = attempt ? rng_next(&r) : seed;
		if ((rc = synth_painting(s, size, rgb)) < 0)
			return rc;
		rc = sketchify(rgb, size, size, 3, NULL, &o, gray, NULL, NULL, 0);
		if (rc != AT_EUNPROCESSABLE)
			return rc;
	}
	return rc;
}

/* ---- photos ---- */

int synth_photo(uint64_t seed, int size, uint8_t *rgb)
{
	int rc = check_args(size, rgb);
	if (rc < 0)
		return rc;
	struct canvas c;
	if ((rc = canvas_new(&c, size)) < 0)
		return rc;
	struct rng r = {seed};
	int n = size;
	double horizon = rng_range(&r, 0.45, 0.7) * n, sky0[3], sky1[3], gnd0[3], gnd1[3];
	hsv(rng_range(&r, 0.5, 0.65), rng_range(&r, 0.2, 0.5), rng_range(&r, 0.8, 1.0), sky0);
	hsv(rng_range(&r, 0.5, 0.65), rng_range(&r, 0.05, 0.2), rng_range(&r, 0.85, 1.0), sky1);
	hsv(rng_range(&r, 0.05, 0.35), rng_range(&r, 0.2, 0.6), rng_range(&r, 0.3, 0.6), gnd0);
	hsv(rng_range(&r, 0.05, 0.35), rng_range(&r, 0.2, 0.6), rng_range(&r, 0.5, 0.8), gnd1);
	for (int y = 0; y < n; y++) {
		for (int x = 0; x < n; x++) {
			float *p = c.px + ((size_t)y * n + x) * 3;
			int sky = y < horizon;
			double t = sky ? y / horizon : (y - horizon) / (n - horizon);
			for (int k = 0; k < 3; k++)
				p[k] = (float)(sky ? sky0[k] * (1 - t) + sky1[k] * t : gnd0[k] * (1 - t) + gnd1[k] * t);
		}
	}
	/* light from the upper left-ish */
	double lx = rng_range(&r, -0.7, -0.2), ly = rng_range(&r, -0.8, -0.4), lz = 0.6;
	double ll = sqrt(lx * lx + ly * ly + lz * lz);
	lx /= ll, ly /= ll, lz /= ll;
	int nobj = 2 + rng_int(&r, 3);
	for (int i = 0; i < nobj; i++) {
		double col[3];
		hsv(rng_unit(&r), rng_range(&r, 0.4, 0.9), rng_range(&r, 0.5, 0.9), col);
		double cx = rng_range(&r, 0.15, 0.85) * n, rad = rng_range(&r, 0.07, 0.16) * n;
		double base = horizon + rng_range(&r, 0.1, 0.9) * (n - horizon); /* where it stands */
		int sphere = rng_unit(&r) < 0.5;
		/* soft shadow on the ground */
		double shcol[3] = {0, 0, 0};
		for (int y = (int)(base - rad * 0.4); y <= (int)(base + rad * 0.4); y++) {
			for (int x = (int)(cx - rad * 1.6); x <= (int)(cx + rad * 1.6); x++) {
				double ex = (x - cx - rad * 0.3) / (rad * 1.4), ey = (y - base) / (rad * 0.3);
				double e = ex * ex + ey * ey;
				if (e < 1)
					blend(&c, x, y, shcol, 0.35 * (1 - e));
			}
		}
		if (sphere) {
			double cy = base - rad;
			for (int y = (int)(cy - rad) - 1; y <= (int)(cy + rad) + 1; y++) {
				for (int x = (int)(cx - rad) - 1; x <= (int)(cx + rad) + 1; x++) {
					double dx = (x + 0.5 - cx) / rad, dy = (y + 0.5 - cy) / rad, d2 = dx * dx + dy * dy;
					double edge = (1 - sqrt(d2)) * rad + 0.5; /* antialiased rim */
					if (edge <= 0)
						continue;
					double nz = d2 < 1 ? sqrt(1 - d2) : 0;
					double lam = dx * lx + dy * ly + nz * lz, shade = 0.25 + 0.75 * (lam > 0 ? lam : 0);
					double spec = pow(lam > 0 ? lam : 0, 24) * 0.5, px[3];
					for (int k = 0; k < 3; k++)
						px[k] = col[k] * shade + spec;
					blend(&c, x, y, px, edge);
				}
			}
		} else {
			/* a box seen from the front-top: front face + lighter top */
			double hw = rad, hgt = rad * rng_range(&r, 1.0, 2.0), top = rad * 0.35;
			for (int y = (int)(base - hgt - top); y <= (int)base; y++) {
				for (int x = (int)(cx - hw); x <= (int)(cx + hw); x++) {
					int is_top = y < base - hgt;
					double g = (x - (cx - hw)) / (2 * hw), px[3];
					for (int k = 0; k < 3; k++)
						px[k] = col[k] * (is_top ? 1.1 : 0.55 + 0.3 * (1 - g));
					blend(&c, x, y, px, 1.0);
				}
			}
		}
	}
	/* sensor noise */
	uint64_t ns = rng_next(&r);
	for (int y = 0; y < n; y++) {
		for (int x = 0; x < n; x++) {
			double t = 0.012 * value_noise(ns, x, y, 1.0);
			float *p = c.px + ((size_t)y * n + x) * 3;
			for (int k = 0; k < 3; k++)
				p[k] += (float)t;
		}
	}
	quantise(&c, rgb);
	free(c.px);
	return 0;
}
