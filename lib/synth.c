/*
 * synth.c — see synth.h.
 *
 * One description, two renderers. A class template (house, tree, …) builds an
 * object: an ordered list of parts in a unit box, each a closed polygon (a
 * region with a colour role) or an open polyline (rays, whiskers, a mast),
 * back to front. The object is then placed on the canvas (scale, offset,
 * small rotation and stretch) and drawn either
 *
 *   - as a sketch: every part's outline becomes a stroke along the polygon,
 *     displaced by smooth noise along its length, with a pen width that
 *     varies along the stroke, an open or overshooting end, sometimes split in
 *     two or traced twice; a closed part first erases the lines of the parts
 *     behind it, so occluded lines are hidden as a person would leave them
 *     out; or
 *   - as a painting: a background wash, every region filled (antialiased
 *     coverage, shading, mottling) in the colours of a style family, outlines
 *     as the family wants, then oriented brush dabs along a smooth direction
 *     field that sample and perturb the colour beneath.
 *
 * Both rasterisers are ours and small: polygon coverage by 4 sub-scanlines
 * with exact horizontal span coverage, strokes as capsules (distance to a
 * segment) with the width interpolated along the segment, composited through
 * a max-coverage mask so joints do not darken.
 *
 * The random stream is splitmix64. Nothing here is global or mutable:
 * thread-safe by construction.
 */
#include "image.h"
#include "sketchnorm.h"
#include "splitmix.h"
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- randomness ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r) { return splitmix64_next(&r->s); }

static double rng_unit(struct rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_range(struct rng *r, double a, double b) { return a + (b - a) * rng_unit(r); }

static int rng_int(struct rng *r, int n) { return (int)(rng_next(r) % (uint64_t)n); }

static int rng_chance(struct rng *r, double p) { return rng_unit(r) < p; }

/* The instance stream of a seed for one domain. mix64 is a bijection, and
 * the low bit is the domain, so a sketch stream (even) never equals a
 * painting stream (odd), whatever the two seeds. */
enum { DOMAIN_SKETCH = 0, DOMAIN_PAINTING = 1 };

static uint64_t stream_of(uint64_t seed, int domain)
{
	return (splitmix64_mix(seed + 0x632be59bd9b4e019ull) & ~1ull) | (uint64_t)domain;
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

/* 1-D smooth noise in [-1, 1], period-free, for displacements along a stroke. */
static double noise1(uint64_t seed, double t)
{
	int i = (int)floor(t);
	double f = t - i;
	f = f * f * (3 - 2 * f);
	double a = lattice(seed, i, 7), b = lattice(seed, i + 1, 7);
	return a + (b - a) * f;
}

static double clampd(double v, double a, double b) { return v < a ? a : v > b ? b : v; }

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
	h = fmod(h, 1.0);
	if (h < 0)
		h += 1.0;
	h *= 6.0;
	s = clampd(s, 0, 1);
	v = clampd(v, 0, 1);
	int i = (int)h;
	double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
	const double tab[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
	memcpy(out, tab[i % 6], sizeof tab[0]);
}

static int check_args(int size, const uint8_t *pix) { return size >= 16 && size <= 4096 && pix ? 0 : AT_EINVAL; }

static int canvas_new(struct canvas *c, int n)
{
	c->n = n;
	c->px = malloc(sizeof(float) * (size_t)n * n * 3);
	return c->px ? 0 : AT_ENOMEM;
}

/* ---- coverage masks: the two rasterisers ---- */

/* A float coverage mask the size of the canvas, all zero between uses; the
 * box says what a draw touched so that apply and clear visit only that. */
struct mask {
	int n;
	float *m;           /* n*n */
	float *acc;         /* n + 2: one row's coverage while a polygon is scanned */
	int x0, y0, x1, y1; /* touched box, inclusive; empty when x0 > x1 */
};

static int mask_new(struct mask *k, int n)
{
	k->n = n;
	k->m = calloc((size_t)n * n, sizeof(float));
	k->acc = calloc((size_t)n + 2, sizeof(float));
	k->x0 = k->y0 = n;
	k->x1 = k->y1 = -1;
	return k->m && k->acc ? 0 : AT_ENOMEM;
}

static void mask_free(struct mask *k)
{
	free(k->m);
	free(k->acc);
}

static void mask_touch(struct mask *k, int x0, int y0, int x1, int y1)
{
	k->x0 = x0 < k->x0 ? x0 : k->x0;
	k->y0 = y0 < k->y0 ? y0 : k->y0;
	k->x1 = x1 > k->x1 ? x1 : k->x1;
	k->y1 = y1 > k->y1 ? y1 : k->y1;
}

/* Clips a box to the mask and marks it touched; -1 when nothing is left. */
static int mask_clip(struct mask *k, int *x0, int *y0, int *x1, int *y1)
{
	*x0 = *x0 < 0 ? 0 : *x0;
	*y0 = *y0 < 0 ? 0 : *y0;
	*x1 = *x1 >= k->n ? k->n - 1 : *x1;
	*y1 = *y1 >= k->n ? k->n - 1 : *y1;
	if (*x0 > *x1 || *y0 > *y1)
		return -1;
	mask_touch(k, *x0, *y0, *x1, *y1);
	return 0;
}

static void mask_clear(struct mask *k)
{
	for (int y = k->y0; y <= k->y1; y++)
		memset(k->m + (size_t)y * k->n + k->x0, 0, sizeof(float) * (size_t)(k->x1 - k->x0 + 1));
	k->x0 = k->y0 = k->n;
	k->x1 = k->y1 = -1;
}

/* A capsule from a (width wa) to b (width wb): coverage max'ed into the mask
 * with weight v. Pixel centres sit at +0.5. */
static void mask_capsule(struct mask *k, double ax, double ay, double wa, double bx, double by, double wb, double v)
{
	double hw = (wa > wb ? wa : wb) * 0.5 + 1.0;
	int x0 = (int)floor((ax < bx ? ax : bx) - hw), x1 = (int)ceil((ax > bx ? ax : bx) + hw);
	int y0 = (int)floor((ay < by ? ay : by) - hw), y1 = (int)ceil((ay > by ? ay : by) + hw);
	if (mask_clip(k, &x0, &y0, &x1, &y1) < 0)
		return;
	double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
	for (int y = y0; y <= y1; y++) {
		float *row = k->m + (size_t)y * k->n;
		double py = y + 0.5 - ay;
		for (int x = x0; x <= x1; x++) {
			double px = x + 0.5 - ax;
			double t = l2 > 0 ? (px * dx + py * dy) / l2 : 0;
			t = t < 0 ? 0 : t > 1 ? 1 : t;
			double ex = px - t * dx, ey = py - t * dy;
			double half = (wa + (wb - wa) * t) * 0.5;
			double cov = half + 0.5 - sqrt(ex * ex + ey * ey);
			if (cov <= 0)
				continue;
			cov = (cov > 1 ? 1 : cov) * v;
			if (cov > row[x])
				row[x] = (float)cov;
		}
	}
}

/* Adds the coverage of span [a, b) to acc with weight w. */
static void span_add(float *acc, int n, double a, double b, double w)
{
	a = a < 0 ? 0 : a;
	b = b > n ? n : b;
	if (b <= a)
		return;
	int ia = (int)a, ib = (int)b;
	if (ia == ib) {
		acc[ia] += (float)((b - a) * w);
		return;
	}
	acc[ia] += (float)((ia + 1 - a) * w);
	for (int i = ia + 1; i < ib; i++)
		acc[i] += (float)w;
	if (ib < n)
		acc[ib] += (float)((b - ib) * w);
}

/* A polygon (even-odd) max'ed into the mask: 4 sub-scanlines per row, exact
 * coverage along each. */
#define SUBROWS 4
#define MAX_CROSS 256
static void mask_poly(struct mask *k, const float *px, const float *py, int np)
{
	if (np < 3)
		return;
	double minx = px[0], maxx = px[0], miny = py[0], maxy = py[0];
	for (int i = 1; i < np; i++) {
		minx = px[i] < minx ? px[i] : minx;
		maxx = px[i] > maxx ? px[i] : maxx;
		miny = py[i] < miny ? py[i] : miny;
		maxy = py[i] > maxy ? py[i] : maxy;
	}
	int x0 = (int)floor(minx), x1 = (int)ceil(maxx), y0 = (int)floor(miny), y1 = (int)ceil(maxy);
	if (mask_clip(k, &x0, &y0, &x1, &y1) < 0)
		return;
	double xs[MAX_CROSS];
	for (int y = y0; y <= y1; y++) {
		for (int s = 0; s < SUBROWS; s++) {
			double sy = y + (s + 0.5) / SUBROWS;
			int nc = 0;
			for (int i = 0, j = np - 1; i < np; j = i++) {
				double ya = py[j], yb = py[i];
				if ((ya <= sy) == (yb <= sy) || nc >= MAX_CROSS)
					continue;
				double x = px[j] + (sy - ya) * (px[i] - px[j]) / (yb - ya);
				/* insertion sort: a handful of crossings */
				int at = nc++;
				while (at > 0 && xs[at - 1] > x) {
					xs[at] = xs[at - 1];
					at--;
				}
				xs[at] = x;
			}
			for (int c = 0; c + 1 < nc; c += 2)
				span_add(k->acc, k->n, xs[c], xs[c + 1], 1.0 / SUBROWS);
		}
		float *row = k->m + (size_t)y * k->n;
		for (int x = x0; x <= x1; x++) {
			float v = k->acc[x] > 1 ? 1 : k->acc[x];
			if (v > row[x])
				row[x] = v;
			k->acc[x] = 0;
		}
	}
}

/* ---- objects: parts in a unit box ---- */

enum role {
	R_WALL,
	R_ROOF,
	R_DOOR,
	R_WINDOW,
	R_CHIMNEY,
	R_TRUNK,
	R_FOLIAGE,
	R_FRUIT,
	R_SUN,
	R_RAY,
	R_FUR,
	R_EAR_IN,
	R_EYE,
	R_PUPIL,
	R_NOSE,
	R_DARK,
	R_PETAL,
	R_CENTRE,
	R_STEM,
	R_LEAF,
	R_FISH,
	R_FIN,
	R_CARBODY,
	R_GLASS,
	R_TYRE,
	R_HUB,
	R_LIGHT,
	R_ROCK,
	R_SNOW,
	R_HULL,
	R_SAIL,
	R_MAST,
	R_WAVE,
	R_STAR,
	R_CLOUD,
	R_RAIN,
	R_BUBBLE,
	R_GROUND,
	R_ROLES
};

/* A role's natural colour: hue, hue spread (>= 0.5: any hue), saturation, value. */
static const struct {
	float h, hj, s, v;
} role_hsv[R_ROLES] = {
	[R_WALL] = {0.09f, 0.08f, 0.35f, 0.85f},    [R_ROOF] = {0.01f, 0.04f, 0.70f, 0.62f},
	[R_DOOR] = {0.07f, 0.05f, 0.60f, 0.45f},    [R_WINDOW] = {0.55f, 0.05f, 0.35f, 0.95f},
	[R_CHIMNEY] = {0.03f, 0.03f, 0.50f, 0.50f}, [R_TRUNK] = {0.07f, 0.02f, 0.60f, 0.40f},
	[R_FOLIAGE] = {0.30f, 0.06f, 0.65f, 0.55f}, [R_FRUIT] = {0.00f, 0.02f, 0.85f, 0.85f},
	[R_SUN] = {0.13f, 0.03f, 0.85f, 1.00f},     [R_RAY] = {0.10f, 0.03f, 0.85f, 1.00f},
	[R_FUR] = {0.08f, 0.03f, 0.60f, 0.85f},     [R_EAR_IN] = {0.95f, 0.02f, 0.35f, 0.95f},
	[R_EYE] = {0.25f, 0.10f, 0.60f, 0.80f},     [R_PUPIL] = {0.00f, 0.00f, 0.00f, 0.08f},
	[R_NOSE] = {0.96f, 0.02f, 0.50f, 0.85f},    [R_DARK] = {0.05f, 0.00f, 0.30f, 0.15f},
	[R_PETAL] = {0.00f, 0.50f, 0.70f, 0.90f},   [R_CENTRE] = {0.12f, 0.03f, 0.85f, 0.90f},
	[R_STEM] = {0.30f, 0.03f, 0.65f, 0.50f},    [R_LEAF] = {0.30f, 0.05f, 0.60f, 0.55f},
	[R_FISH] = {0.00f, 0.50f, 0.80f, 0.90f},    [R_FIN] = {0.00f, 0.50f, 0.80f, 0.70f},
	[R_CARBODY] = {0.00f, 0.50f, 0.75f, 0.75f}, [R_GLASS] = {0.56f, 0.02f, 0.30f, 0.90f},
	[R_TYRE] = {0.00f, 0.00f, 0.00f, 0.15f},    [R_HUB] = {0.00f, 0.00f, 0.00f, 0.70f},
	[R_LIGHT] = {0.15f, 0.02f, 0.50f, 1.00f},   [R_ROCK] = {0.60f, 0.05f, 0.22f, 0.55f},
	[R_SNOW] = {0.60f, 0.00f, 0.05f, 0.98f},    [R_HULL] = {0.05f, 0.05f, 0.60f, 0.45f},
	[R_SAIL] = {0.10f, 0.02f, 0.10f, 0.97f},    [R_MAST] = {0.07f, 0.02f, 0.60f, 0.35f},
	[R_WAVE] = {0.55f, 0.02f, 0.20f, 0.95f},    [R_STAR] = {0.14f, 0.02f, 0.85f, 1.00f},
	[R_CLOUD] = {0.60f, 0.00f, 0.06f, 0.97f},   [R_RAIN] = {0.58f, 0.02f, 0.60f, 0.80f},
	[R_BUBBLE] = {0.52f, 0.02f, 0.20f, 0.95f},  [R_GROUND] = {0.00f, 0.00f, 0.00f, 0.20f},
};

enum part_flag {
	PF_CLOSED = 1,      /* a region: filled in a painting, outlined in a sketch */
	PF_OPEN_SKETCH = 2, /* outlined without its closing edge (a door's sill, a mountain's base) */
	PF_SKETCH_ONLY = 4, /* a sketch's ground line: the painting has a ground instead */
	PF_FILL_SKETCH = 8, /* small and dark: inked solid in a sketch (pupils, knobs) */
};

#define MAXP 80
#define MAXPARTS 48

struct part {
	int role, flags, n;
	float w; /* a line's painted width, in units of the object's size */
	float x[MAXP], y[MAXP];
};

enum background { BG_LAND, BG_SEA, BG_WATER, BG_SKY, BG_NIGHT, BG_PLAIN };

struct object {
	int n;
	struct part p[MAXPARTS + 1]; /* the last is a sink for parts past the cap */
	double ground;               /* unit y where the object meets the ground or water line */
	double scale;                /* pixels per unit once placed */
	double gx, gy;               /* the ground anchor, placed */
};

static struct part *part_new(struct object *o, int role, int flags)
{
	struct part *p = o->n < MAXPARTS ? &o->p[o->n++] : &o->p[MAXPARTS];
	p->role = role;
	p->flags = flags;
	p->n = 0;
	p->w = 0.02f;
	return p;
}

static void pt(struct part *p, double x, double y)
{
	if (p->n < MAXP) {
		p->x[p->n] = (float)x;
		p->y[p->n] = (float)y;
		p->n++;
	}
}

static void rect(struct object *o, int role, int flags, double x0, double y0, double x1, double y1)
{
	/* starts bottom-left so that the closing edge is the bottom (PF_OPEN_SKETCH) */
	struct part *p = part_new(o, role, PF_CLOSED | flags);
	pt(p, x0, y1);
	pt(p, x0, y0);
	pt(p, x1, y0);
	pt(p, x1, y1);
}

static void ellipse(struct object *o, int role, int flags, double cx, double cy, double rx, double ry, double rot)
{
	struct part *p = part_new(o, role, PF_CLOSED | flags);
	int m = rx + ry > 0.1 ? 40 : 16;
	double c = cos(rot), s = sin(rot);
	for (int i = 0; i < m; i++) {
		double a = 2 * M_PI * i / m, u = rx * cos(a), v = ry * sin(a);
		pt(p, cx + u * c - v * s, cy + u * s + v * c);
	}
}

static void tri(struct object *o, int role, int flags, double ax, double ay, double bx, double by, double cx, double cy)
{
	struct part *p = part_new(o, role, PF_CLOSED | flags);
	pt(p, ax, ay);
	pt(p, bx, by);
	pt(p, cx, cy);
}

static struct part *line2(struct object *o, int role, double w, double ax, double ay, double bx, double by)
{
	struct part *p = part_new(o, role, 0);
	p->w = (float)w;
	pt(p, ax, ay);
	pt(p, bx, by);
	return p;
}

static struct part *arc(struct object *o, int role, double w, double cx, double cy, double rx, double ry, double a0,
			double a1, int m)
{
	struct part *p = part_new(o, role, 0);
	p->w = (float)w;
	for (int i = 0; i <= m; i++) {
		double a = a0 + (a1 - a0) * i / m;
		pt(p, cx + rx * cos(a), cy + ry * sin(a));
	}
	return p;
}

/* A scalloped outline (tree crowns, clouds): an ellipse whose radius bulges
 * in k bumps; `top` weights the bumps on the upper half. */
static void scallop(struct object *o, int role, double cx, double cy, double rx, double ry, int k, double amp,
		    double top, double phase)
{
	struct part *p = part_new(o, role, PF_CLOSED);
	int m = MAXP;
	for (int i = 0; i < m; i++) {
		double a = 2 * M_PI * i / m, s = sin(a);
		double w = s < 0 ? 1.0 : 1.0 - top; /* y grows downwards: s < 0 is the top */
		double b = fabs(sin(k * a / 2 + phase));
		double r = 1 + amp * w * (sqrt(b) - 0.6);
		pt(p, cx + rx * r * cos(a), cy + ry * r * s);
	}
}

/* ---- class templates (unit box, y down, ground at o->ground) ---- */

static void t_house(struct object *o, struct rng *r)
{
	double x0 = rng_range(r, 0.12, 0.25), x1 = rng_range(r, 0.75, 0.88), top = rng_range(r, 0.42, 0.56), bot = 0.97;
	double apx = (x0 + x1) / 2 + rng_range(r, -0.05, 0.05), apy = rng_range(r, 0.06, 0.2);
	double oh = rng_range(r, 0, 0.07);
	o->ground = bot;
	if (rng_chance(r, 0.35))
		line2(o, R_GROUND, 0.01, rng_range(r, 0, 0.08), bot, rng_range(r, 0.92, 1), bot)->flags |=
			PF_SKETCH_ONLY;
	if (rng_chance(r, 0.55)) {
		double cw = rng_range(r, 0.06, 0.1), cx = x1 - (x1 - x0) * rng_range(r, 0.18, 0.3);
		double ry = top - (top - apy) * (cx - apx) / (x1 + oh - apx); /* the roof line above cx */
		rect(o, R_CHIMNEY, 0, cx - cw / 2, ry - rng_range(r, 0.08, 0.16), cx + cw / 2, ry + 0.06);
	}
	rect(o, R_WALL, 0, x0, top, x1, bot);
	if (rng_chance(r, 0.2)) { /* a flat-topped roof */
		struct part *p = part_new(o, R_ROOF, PF_CLOSED);
		double hw = rng_range(r, 0.08, 0.18);
		pt(p, x0 - oh, top);
		pt(p, apx - hw, apy + 0.04);
		pt(p, apx + hw, apy + 0.04);
		pt(p, x1 + oh, top);
	} else {
		tri(o, R_ROOF, 0, x0 - oh, top, apx, apy, x1 + oh, top);
	}
	double w = x1 - x0, dw = w * rng_range(r, 0.2, 0.28), dh = (bot - top) * rng_range(r, 0.5, 0.7);
	double dx = x0 + w * rng_range(r, 0.15, 0.85) - dw / 2;
	int door = rng_chance(r, 0.85);
	if (door) {
		rect(o, R_DOOR, PF_OPEN_SKETCH, dx, bot - dh, dx + dw, bot);
		if (rng_chance(r, 0.6))
			ellipse(o, R_DARK, PF_FILL_SKETCH, dx + dw * 0.78, bot - dh * 0.45, 0.012, 0.012, 0);
	}
	/* windows left and right of the door, in the upper part of the wall */
	int nw = rng_int(r, 4);
	double ws = w * rng_range(r, 0.14, 0.2), wy = top + (bot - top) * rng_range(r, 0.2, 0.3);
	int cross = rng_chance(r, 0.6), round = rng_chance(r, 0.12);
	for (int i = 0; i < nw; i++) {
		double cx = x0 + w * (i + 0.5) / nw + rng_range(r, -0.02, 0.02);
		if (door && cx + ws / 2 > dx - 0.02 && cx - ws / 2 < dx + dw + 0.02)
			continue; /* no window over the door */
		if (round) {
			ellipse(o, R_WINDOW, 0, cx, wy + ws / 2, ws / 2, ws / 2, 0);
		} else {
			rect(o, R_WINDOW, 0, cx - ws / 2, wy, cx + ws / 2, wy + ws);
			if (cross) {
				line2(o, R_DARK, 0.012, cx, wy, cx, wy + ws);
				line2(o, R_DARK, 0.012, cx - ws / 2, wy + ws / 2, cx + ws / 2, wy + ws / 2);
			}
		}
	}
}

static void t_tree(struct object *o, struct rng *r)
{
	double tx = 0.5 + rng_range(r, -0.04, 0.04), tw = rng_range(r, 0.05, 0.08), ttop = rng_range(r, 0.45, 0.6);
	o->ground = 0.97;
	if (rng_chance(r, 0.3))
		line2(o, R_GROUND, 0.01, rng_range(r, 0.05, 0.2), 0.97, rng_range(r, 0.8, 0.95), 0.97)->flags |=
			PF_SKETCH_ONLY;
	struct part *p = part_new(o, R_TRUNK, PF_CLOSED | PF_OPEN_SKETCH);
	double flare = rng_range(r, 0, 0.04);
	pt(p, tx - tw - flare, 0.97);
	pt(p, tx - tw, 0.97 - 0.06);
	pt(p, tx - tw * 0.8, ttop);
	pt(p, tx + tw * 0.8, ttop);
	pt(p, tx + tw, 0.97 - 0.06);
	pt(p, tx + tw + flare, 0.97);
	if (rng_chance(r, 0.3)) { /* a pine: stacked triangles, bottom first */
		int k = 2 + rng_int(r, 2);
		double base = ttop + 0.1, hw = rng_range(r, 0.3, 0.4), step = (base - 0.05) / (k + 0.6);
		for (int i = 0; i < k; i++) {
			double b = base - i * step * 0.9, h = step * 1.7, w = hw * (1 - 0.22 * i);
			tri(o, R_FOLIAGE, 0, tx - w, b, tx, b - h, tx + w, b);
		}
		return;
	}
	double cy = rng_range(r, 0.3, 0.38), rx = rng_range(r, 0.28, 0.38), ry = rng_range(r, 0.24, 0.32);
	if (rng_chance(r, 0.25))
		ellipse(o, R_FOLIAGE, 0, tx, cy, rx, ry, 0);
	else
		scallop(o, R_FOLIAGE, tx, cy, rx, ry, 6 + rng_int(r, 5), rng_range(r, 0.12, 0.22), 0.0,
			rng_range(r, 0, M_PI));
	if (rng_chance(r, 0.3)) {
		int k = 3 + rng_int(r, 4);
		for (int i = 0; i < k; i++) {
			double a = rng_range(r, 0, 2 * M_PI), d = sqrt(rng_unit(r)) * 0.7;
			ellipse(o, R_FRUIT, 0, tx + rx * d * cos(a), cy + ry * d * sin(a), 0.03, 0.03, 0);
		}
	}
}

static void t_sun(struct object *o, struct rng *r)
{
	double cx = 0.5, cy = 0.5, rad = rng_range(r, 0.19, 0.26), r1 = rad * rng_range(r, 1.15, 1.3),
	       r2 = rad * rng_range(r, 1.6, 1.95), a0 = rng_range(r, 0, M_PI);
	int k = 8 + rng_int(r, 7), alt = rng_chance(r, 0.3), tris = rng_chance(r, 0.2);
	o->ground = 1.0;
	for (int i = 0; i < k; i++) {
		double a = a0 + 2 * M_PI * i / k + rng_range(r, -0.06, 0.06);
		double rr = alt && (i & 1) ? r1 + (r2 - r1) * 0.6 : r2 * rng_range(r, 0.95, 1.05);
		if (tris) {
			double da = M_PI / k * 0.55;
			tri(o, R_RAY, 0, cx + r1 * cos(a - da), cy + r1 * sin(a - da), cx + rr * cos(a),
			    cy + rr * sin(a), cx + r1 * cos(a + da), cy + r1 * sin(a + da));
		} else {
			line2(o, R_RAY, 0.03, cx + r1 * cos(a), cy + r1 * sin(a), cx + rr * cos(a), cy + rr * sin(a));
		}
	}
	ellipse(o, R_SUN, 0, cx, cy, rad, rad * rng_range(r, 0.95, 1.05), 0);
	if (rng_chance(r, 0.35)) {
		ellipse(o, R_DARK, PF_FILL_SKETCH, cx - rad * 0.35, cy - rad * 0.2, rad * 0.08, rad * 0.1, 0);
		ellipse(o, R_DARK, PF_FILL_SKETCH, cx + rad * 0.35, cy - rad * 0.2, rad * 0.08, rad * 0.1, 0);
		arc(o, R_DARK, 0.015, cx, cy + rad * 0.05, rad * 0.45, rad * 0.4, 0.5, M_PI - 0.5, 10);
	}
}

static void t_cat(struct object *o, struct rng *r)
{
	double cx = 0.5, cy = rng_range(r, 0.56, 0.62), rx = rng_range(r, 0.3, 0.37), ry = rng_range(r, 0.25, 0.31);
	double ew = rng_range(r, 0.22, 0.32), eh = rng_range(r, 1.45, 1.75), inner = rng_chance(r, 0.5);
	o->ground = 1.0;
	for (int s = -1; s <= 1; s += 2) {
		double am = -M_PI / 2 + s * rng_range(r, 0.55, 0.8); /* ear centre angle from the top */
		double ax = cx + rx * cos(am - ew), ay = cy + ry * sin(am - ew);
		double bx = cx + rx * cos(am + ew), by = cy + ry * sin(am + ew);
		double tx = cx + rx * eh * cos(am), ty = cy + ry * eh * sin(am);
		tri(o, R_FUR, 0, ax, ay, tx, ty, bx, by);
		if (inner) {
			double mx = (ax + bx) / 2, my = (ay + by) / 2;
			tri(o, R_EAR_IN, 0, mx + (ax - mx) * 0.55, my + (ay - my) * 0.55, mx + (tx - mx) * 0.7,
			    my + (ty - my) * 0.7, mx + (bx - mx) * 0.55, my + (by - my) * 0.55);
		}
	}
	ellipse(o, R_FUR, 0, cx, cy, rx, ry, 0);
	double ex = rx * rng_range(r, 0.36, 0.46), ey = cy - ry * rng_range(r, 0.05, 0.2),
	       er = rx * rng_range(r, 0.13, 0.18);
	int slit = rng_chance(r, 0.5);
	for (int s = -1; s <= 1; s += 2) {
		ellipse(o, R_EYE, 0, cx + s * ex, ey, er, er * rng_range(r, 0.8, 1.15), 0);
		if (slit)
			ellipse(o, R_PUPIL, PF_FILL_SKETCH, cx + s * ex, ey, er * 0.22, er * 0.8, 0);
		else
			ellipse(o, R_PUPIL, PF_FILL_SKETCH, cx + s * ex, ey, er * 0.45, er * 0.45, 0);
	}
	double ny = cy + ry * rng_range(r, 0.12, 0.22), nw = rx * 0.1;
	tri(o, R_NOSE, rng_chance(r, 0.5) ? PF_FILL_SKETCH : 0, cx - nw, ny, cx + nw, ny, cx, ny + nw * 1.1);
	double my = ny + nw * 1.1, mw = rx * rng_range(r, 0.16, 0.24);
	line2(o, R_DARK, 0.012, cx, my, cx, my + mw * 0.4);
	arc(o, R_DARK, 0.012, cx - mw / 2, my + mw * 0.4, mw / 2, mw * 0.4, 0, M_PI, 8);
	arc(o, R_DARK, 0.012, cx + mw / 2, my + mw * 0.4, mw / 2, mw * 0.4, 0, M_PI, 8);
	if (rng_chance(r, 0.85)) {
		int k = 2 + rng_int(r, 2);
		for (int s = -1; s <= 1; s += 2)
			for (int i = 0; i < k; i++) {
				double yy = my + (i - (k - 1) / 2.0) * ry * 0.14;
				line2(o, R_DARK, 0.008, cx + s * rx * 0.3, yy, cx + s * rx * rng_range(r, 1.0, 1.25),
				      yy + (i - (k - 1) / 2.0) * ry * 0.15 + rng_range(r, -0.02, 0.02));
			}
	}
}

static void t_flower(struct object *o, struct rng *r)
{
	double cx = 0.5 + rng_range(r, -0.05, 0.05), cy = rng_range(r, 0.28, 0.36), rc = rng_range(r, 0.06, 0.09);
	double pl = rng_range(r, 0.14, 0.2), pw = pl * rng_range(r, 0.4, 0.65);
	int k = 5 + rng_int(r, 4);
	o->ground = 0.97;
	if (rng_chance(r, 0.3))
		line2(o, R_GROUND, 0.01, 0.15, 0.97, 0.85, 0.97)->flags |= PF_SKETCH_ONLY;
	/* the stem bends gently; drawn first so petals and centre cover its top */
	struct part *st = part_new(o, R_STEM, 0);
	st->w = 0.03f;
	double bend = rng_range(r, -0.08, 0.08);
	for (int i = 0; i <= 8; i++) {
		double t = i / 8.0;
		pt(st, cx + bend * sin(M_PI * t), 0.97 + (cy - 0.97) * t);
	}
	int nl = rng_int(r, 3);
	for (int i = 0; i < nl; i++) {
		double ly = rng_range(r, 0.62, 0.82), s = (i & 1) ? 1 : -1,
		       lx = cx + bend * sin(M_PI * (0.97 - ly) / (0.97 - cy));
		double ll = rng_range(r, 0.13, 0.2), a = -M_PI / 2 + s * rng_range(r, 0.7, 1.2);
		ellipse(o, R_LEAF, 0, lx + cos(a) * ll / 2, ly + sin(a) * ll / 2, ll / 2, ll * 0.22, a);
	}
	double a0 = rng_range(r, 0, M_PI);
	for (int i = 0; i < k; i++) {
		double a = a0 + 2 * M_PI * i / k, d = rc + pl / 2 - 0.01;
		ellipse(o, R_PETAL, 0, cx + d * cos(a), cy + d * sin(a), pl / 2, pw / 2, a);
	}
	ellipse(o, R_CENTRE, 0, cx, cy, rc, rc, 0);
}

static void t_fish(struct object *o, struct rng *r)
{
	double cx = rng_range(r, 0.42, 0.48), cy = 0.5, rx = rng_range(r, 0.28, 0.34), ry = rng_range(r, 0.14, 0.22);
	o->ground = 1.0;
	double bx = cx + rx * 0.85, tl = rng_range(r, 0.14, 0.2), th = rng_range(r, 0.12, 0.2);
	if (rng_chance(r, 0.5)) {
		struct part *p = part_new(o, R_FIN, PF_CLOSED); /* a forked tail */
		pt(p, bx, cy);
		pt(p, bx + tl, cy - th);
		pt(p, bx + tl * 0.65, cy);
		pt(p, bx + tl, cy + th);
	} else {
		tri(o, R_FIN, 0, bx, cy, bx + tl, cy - th, bx + tl, cy + th);
	}
	if (rng_chance(r, 0.6))
		tri(o, R_FIN, 0, cx - rx * 0.3, cy - ry * 0.9, cx - rx * 0.05 + rng_range(r, 0, 0.08),
		    cy - ry - rng_range(r, 0.06, 0.12), cx + rx * 0.35, cy - ry * 0.85);
	if (rng_chance(r, 0.4))
		tri(o, R_FIN, 0, cx - rx * 0.1, cy + ry * 0.9, cx + rx * 0.05, cy + ry + rng_range(r, 0.05, 0.09),
		    cx + rx * 0.3, cy + ry * 0.85);
	/* the body: an ellipse pinched toward the tail */
	struct part *p = part_new(o, R_FISH, PF_CLOSED);
	double pinch = rng_range(r, 0.1, 0.35);
	for (int i = 0; i < 48; i++) {
		double a = 2 * M_PI * i / 48, c = cos(a);
		double ys = c > 0 ? 1 - pinch * c * c : 1;
		pt(p, cx + rx * c, cy + ry * ys * sin(a));
	}
	double ex = cx - rx * 0.55, ey = cy - ry * 0.25, er = ry * rng_range(r, 0.16, 0.24);
	if (rng_chance(r, 0.6))
		arc(o, R_DARK, 0.012, cx - rx * 0.55, cy, rx * 0.25, ry * 0.75, -0.9, 0.9, 8);
	if (rng_chance(r, 0.3))
		for (int i = 0; i < 3; i++)
			arc(o, R_DARK, 0.01, cx + rx * (0.05 + 0.2 * i), cy + ry * rng_range(r, -0.2, 0.2), rx * 0.1,
			    ry * 0.25, -1.2, 1.2, 6);
	ellipse(o, R_EYE, 0, ex, ey, er, er, 0);
	ellipse(o, R_PUPIL, PF_FILL_SKETCH, ex - er * 0.15, ey, er * 0.45, er * 0.45, 0);
	if (rng_chance(r, 0.5))
		arc(o, R_DARK, 0.012, cx - rx * 0.98, cy + ry * 0.15, rx * 0.1, ry * 0.12, -1.8, -0.2, 5);
	if (rng_chance(r, 0.4)) {
		int k = 1 + rng_int(r, 3);
		for (int i = 0; i < k; i++) {
			double br = 0.02 + 0.012 * i;
			ellipse(o, R_BUBBLE, 0, cx - rx - 0.04 + rng_range(r, -0.03, 0.03), cy - ry - 0.06 - 0.09 * i,
				br, br, 0);
		}
	}
}

static void t_car(struct object *o, struct rng *r)
{
	double bot = rng_range(r, 0.72, 0.78), belt = bot - rng_range(r, 0.18, 0.24),
	       roof = belt - rng_range(r, 0.17, 0.24);
	double c0 = rng_range(r, 0.22, 0.3), c1 = rng_range(r, 0.62, 0.72), slant = rng_range(r, 0.05, 0.12);
	double wr = rng_range(r, 0.085, 0.11);
	o->ground = bot + wr * 0.9;
	if (rng_chance(r, 0.4))
		line2(o, R_GROUND, 0.01, 0.0, o->ground, 1.0, o->ground)->flags |= PF_SKETCH_ONLY;
	struct part *p = part_new(o, R_CARBODY, PF_CLOSED);
	double nose = rng_range(r, 0.0, 0.05);
	pt(p, 0.05, bot);
	pt(p, 0.04, belt + 0.04);
	pt(p, 0.08, belt + nose);
	pt(p, c0 - slant, belt);
	pt(p, c0, roof);
	pt(p, c1, roof);
	pt(p, c1 + slant * 1.3, belt);
	pt(p, 0.92, belt + 0.02);
	pt(p, 0.96, belt + 0.06);
	pt(p, 0.95, bot);
	/* windows inside the cabin, split by a pillar or not */
	double in = 0.025, wy0 = roof + in, wy1 = belt - in * 0.5;
	double l0 = c0 - slant + in * 1.6, l1 = c0 + in * 0.6, r0 = c1 - in * 0.6, r1 = c1 + slant * 1.3 - in * 1.8;
	if (rng_chance(r, 0.7)) {
		double mid = (c0 + c1) / 2 + rng_range(r, -0.03, 0.03);
		struct part *w = part_new(o, R_GLASS, PF_CLOSED);
		pt(w, l0, wy1);
		pt(w, l1, wy0);
		pt(w, mid - in / 2, wy0);
		pt(w, mid - in / 2, wy1);
		w = part_new(o, R_GLASS, PF_CLOSED);
		pt(w, mid + in / 2, wy1);
		pt(w, mid + in / 2, wy0);
		pt(w, r0, wy0);
		pt(w, r1, wy1);
	} else {
		struct part *w = part_new(o, R_GLASS, PF_CLOSED);
		pt(w, l0, wy1);
		pt(w, l1, wy0);
		pt(w, r0, wy0);
		pt(w, r1, wy1);
	}
	if (rng_chance(r, 0.5))
		line2(o, R_DARK, 0.01, (c0 + c1) / 2, belt + 0.01, (c0 + c1) / 2, bot - 0.03);
	if (rng_chance(r, 0.5))
		ellipse(o, R_LIGHT, 0, 0.92, belt + 0.07, 0.025, 0.02, 0);
	int hubs = rng_chance(r, 0.7);
	for (int s = 0; s < 2; s++) {
		double wx = s ? rng_range(r, 0.7, 0.78) : rng_range(r, 0.22, 0.3);
		ellipse(o, R_TYRE, 0, wx, bot, wr, wr, 0);
		if (hubs)
			ellipse(o, R_HUB, 0, wx, bot, wr * 0.45, wr * 0.45, 0);
	}
}

/* The point `frac` of the way along a polyline's length from its start. */
static void along(const double *x, const double *y, int n, double frac, double *ox, double *oy)
{
	double total = 0;
	for (int i = 1; i < n; i++)
		total += hypot(x[i] - x[i - 1], y[i] - y[i - 1]);
	double want = total * frac;
	for (int i = 1; i < n; i++) {
		double l = hypot(x[i] - x[i - 1], y[i] - y[i - 1]);
		if (want <= l || i == n - 1) {
			double t = l > 0 ? clampd(want / l, 0, 1) : 0;
			*ox = x[i - 1] + (x[i] - x[i - 1]) * t;
			*oy = y[i - 1] + (y[i] - y[i - 1]) * t;
			return;
		}
		want -= l;
	}
	*ox = x[0];
	*oy = y[0];
}

/* One jagged peak from (l, base) over (px, py) to (r, base); snow optional. */
static void peak(struct object *o, struct rng *r, double l, double px, double py, double rr, double base, int snow)
{
	double lx[8], ly[8], rx[8], ry[8];
	int m = 3 + rng_int(r, 3);
	/* each slope from the summit down, with small kinks */
	for (int i = 0; i <= m; i++) {
		double t = (double)i / m, j = (i == 0 || i == m) ? 0 : rng_range(r, -0.03, 0.03);
		lx[i] = px + (l - px) * t + j;
		ly[i] = py + (base - py) * t + j * 0.5;
		j = (i == 0 || i == m) ? 0 : rng_range(r, -0.03, 0.03);
		rx[i] = px + (rr - px) * t + j;
		ry[i] = py + (base - py) * t + j * 0.5;
	}
	struct part *p = part_new(o, R_ROCK, PF_CLOSED | PF_OPEN_SKETCH);
	for (int i = m; i >= 0; i--)
		pt(p, lx[i], ly[i]);
	for (int i = 1; i <= m; i++)
		pt(p, rx[i], ry[i]);
	if (!snow)
		return;
	double f = rng_range(r, 0.25, 0.4), ax, ay, bx, by;
	along(lx, ly, m + 1, f, &ax, &ay);
	along(rx, ry, m + 1, f * rng_range(r, 0.8, 1.2), &bx, &by);
	struct part *s = part_new(o, R_SNOW, PF_CLOSED);
	pt(s, px, py);
	pt(s, bx, by);
	int z = 3 + rng_int(r, 3);
	for (int i = 1; i < z; i++) { /* the snow line zigzags back */
		double t = (double)i / z;
		pt(s, bx + (ax - bx) * t, by + (ay - by) * t + ((i & 1) ? -0.04 : 0.02));
	}
	pt(s, ax, ay);
}

static void t_mountain(struct object *o, struct rng *r)
{
	double base = 0.92;
	o->ground = base;
	int k = 1 + rng_int(r, 3), snow = rng_chance(r, 0.65);
	/* side peaks first (behind), the main one last */
	for (int i = 1; i < k; i++) {
		double px = i == 1 ? rng_range(r, 0.2, 0.3) : rng_range(r, 0.7, 0.8), py = rng_range(r, 0.3, 0.45);
		peak(o, r, px - rng_range(r, 0.2, 0.3), px, py, px + rng_range(r, 0.2, 0.3), base, snow);
	}
	double px = rng_range(r, 0.42, 0.58), py = rng_range(r, 0.08, 0.2);
	peak(o, r, rng_range(r, 0.02, 0.12), px, py, rng_range(r, 0.88, 0.98), base, snow);
	if (rng_chance(r, 0.3))
		line2(o, R_GROUND, 0.01, 0.0, base, 1.0, base)->flags |= PF_SKETCH_ONLY;
}

static void t_boat(struct object *o, struct rng *r)
{
	double top = rng_range(r, 0.6, 0.66), bot = top + rng_range(r, 0.13, 0.18), hx0 = rng_range(r, 0.06, 0.14),
	       hx1 = rng_range(r, 0.86, 0.94), in = rng_range(r, 0.08, 0.16);
	double mx = rng_range(r, 0.42, 0.52), mt = rng_range(r, 0.06, 0.14);
	o->ground = top + (bot - top) * 0.6;
	line2(o, R_MAST, 0.02, mx, top, mx, mt);
	struct part *s = part_new(o, R_SAIL, PF_CLOSED);
	pt(s, mx + 0.015, mt + 0.03);
	pt(s, mx + 0.015, top - 0.04);
	pt(s, mx + rng_range(r, 0.25, 0.36), top - 0.04);
	if (rng_chance(r, 0.5))
		tri(o, R_SAIL, 0, mx - 0.015, mt + 0.08, mx - 0.015, top - 0.04, mx - rng_range(r, 0.18, 0.28),
		    top - 0.04);
	if (rng_chance(r, 0.4))
		tri(o, R_FRUIT, 0, mx, mt, mx, mt + 0.06, mx - rng_range(r, 0.07, 0.1), mt + 0.03);
	struct part *h = part_new(o, R_HULL, PF_CLOSED);
	pt(h, hx0, top);
	pt(h, hx0 + in, bot);
	pt(h, hx1 - in, bot);
	pt(h, hx1, top);
	int nw = rng_int(r, 3);
	for (int i = 0; i < nw; i++) {
		struct part *w = part_new(o, R_WAVE, PF_SKETCH_ONLY);
		w->w = 0.012f;
		double y = bot + 0.05 + 0.06 * i, x0 = rng_range(r, 0.0, 0.2), x1 = rng_range(r, 0.8, 1.0);
		for (int j = 0; j <= 16; j++) {
			double t = j / 16.0;
			pt(w, x0 + (x1 - x0) * t, y + 0.015 * sin(t * 6 * M_PI));
		}
	}
}

static void t_star(struct object *o, struct rng *r)
{
	int k = rng_chance(r, 0.8) ? 5 : 6;
	double R = rng_range(r, 0.4, 0.46), ri = R * rng_range(r, 0.38, 0.5),
	       a0 = -M_PI / 2 + rng_range(r, -0.15, 0.15);
	o->ground = 1.0;
	struct part *p = part_new(o, R_STAR, PF_CLOSED);
	for (int i = 0; i < 2 * k; i++) {
		double a = a0 + M_PI * i / k, rr = (i & 1) ? ri : R;
		pt(p, 0.5 + rr * cos(a), 0.53 + rr * sin(a));
	}
}

static void t_cloud(struct object *o, struct rng *r)
{
	double cx = 0.5, cy = rng_range(r, 0.4, 0.48), rx = rng_range(r, 0.36, 0.44), ry = rng_range(r, 0.17, 0.24);
	o->ground = 1.0;
	scallop(o, R_CLOUD, cx, cy, rx, ry, 5 + rng_int(r, 4), rng_range(r, 0.3, 0.45), 0.7, rng_range(r, 0, M_PI));
	if (rng_chance(r, 0.35)) {
		int k = 3 + rng_int(r, 4);
		for (int i = 0; i < k; i++) {
			double x = cx - rx * 0.7 + rx * 1.4 * (i + 0.5) / k, y = cy + ry + 0.06;
			line2(o, R_RAIN, 0.012, x, y, x - 0.03, y + rng_range(r, 0.1, 0.18));
		}
	}
}

static const struct {
	const char *name;
	void (*build)(struct object *, struct rng *);
	enum background bg;
} classes[SYNTH_CLASSES] = {
	[SYNTH_HOUSE] = {"house", t_house, BG_LAND},    [SYNTH_TREE] = {"tree", t_tree, BG_LAND},
	[SYNTH_SUN] = {"sun", t_sun, BG_SKY},           [SYNTH_CAT] = {"cat", t_cat, BG_PLAIN},
	[SYNTH_FLOWER] = {"flower", t_flower, BG_LAND}, [SYNTH_FISH] = {"fish", t_fish, BG_WATER},
	[SYNTH_CAR] = {"car", t_car, BG_LAND},          [SYNTH_MOUNTAIN] = {"mountain", t_mountain, BG_LAND},
	[SYNTH_BOAT] = {"boat", t_boat, BG_SEA},        [SYNTH_STAR] = {"star", t_star, BG_NIGHT},
	[SYNTH_CLOUD] = {"cloud", t_cloud, BG_SKY},
};

static const char *const family_names[SYNTH_FAMILIES] = {"impressionist", "watercolour", "poster", "oil"};

const char *synth_class_name(int cls) { return cls >= 0 && cls < SYNTH_CLASSES ? classes[cls].name : "?"; }

const char *synth_family_name(int family)
{
	return family >= 0 && family < SYNTH_FAMILIES ? family_names[family] : "?";
}

/* Builds the class's object and places it on an n-pixel canvas: scale,
 * stretch, small rotation, offset, then fitted inside a margin. Fish, cars
 * and boats face either way. */
static void object_build(struct object *o, struct rng *r, int cls, int n)
{
	o->n = 0;
	o->ground = 1.0;
	classes[cls].build(o, r);
	if ((cls == SYNTH_FISH || cls == SYNTH_CAR || cls == SYNTH_BOAT || cls == SYNTH_HOUSE) && rng_chance(r, 0.5))
		for (int i = 0; i < o->n; i++)
			for (int j = 0; j < o->p[i].n; j++)
				o->p[i].x[j] = 1.0f - o->p[i].x[j];
	double S = n * rng_range(r, 0.52, 0.88), st = rng_range(r, 0.9, 1.1), th = rng_range(r, -0.1, 0.1);
	double cs = cos(th), sn = sin(th), cx = n * (0.5 + rng_range(r, -0.06, 0.06)),
	       cy = n * (0.5 + rng_range(r, -0.06, 0.06));
	double minx = 1e9, maxx = -1e9, miny = 1e9, maxy = -1e9;
	o->gx = 0.5;
	o->gy = o->ground;
	for (int i = 0; i <= o->n; i++) {
		int last = i == o->n, m = last ? 1 : o->p[i].n;
		for (int j = 0; j < m; j++) {
			double u = ((last ? o->gx : o->p[i].x[j]) - 0.5) * S * st,
			       v = ((last ? o->gy : o->p[i].y[j]) - 0.5) * S / st;
			double X = cx + u * cs - v * sn, Y = cy + u * sn + v * cs;
			if (last) {
				o->gx = X;
				o->gy = Y;
				break;
			}
			o->p[i].x[j] = (float)X;
			o->p[i].y[j] = (float)Y;
			minx = X < minx ? X : minx;
			maxx = X > maxx ? X : maxx;
			miny = Y < miny ? Y : miny;
			maxy = Y > maxy ? Y : maxy;
		}
	}
	/* fit inside the margin: shrink about the box centre, then shift in */
	double mg = n * 0.04, k = 1.0;
	if (maxx - minx > n - 2 * mg)
		k = (n - 2 * mg) / (maxx - minx);
	if (maxy - miny > n - 2 * mg && (n - 2 * mg) / (maxy - miny) < k)
		k = (n - 2 * mg) / (maxy - miny);
	double bx = (minx + maxx) / 2, by = (miny + maxy) / 2;
	double hx = (maxx - minx) * k / 2, hy = (maxy - miny) * k / 2;
	double sx = bx - hx < mg ? mg - (bx - hx) : bx + hx > n - mg ? (n - mg) - (bx + hx) : 0;
	double sy = by - hy < mg ? mg - (by - hy) : by + hy > n - mg ? (n - mg) - (by + hy) : 0;
	for (int i = 0; i < o->n; i++)
		for (int j = 0; j < o->p[i].n; j++) {
			o->p[i].x[j] = (float)(bx + (o->p[i].x[j] - bx) * k + sx);
			o->p[i].y[j] = (float)(by + (o->p[i].y[j] - by) * k + sy);
		}
	o->gx = bx + (o->gx - bx) * k + sx;
	o->gy = by + (o->gy - by) * k + sy;
	o->scale = S * k;
}

/* ---- smooth noise fields ---- */

/* out[i] += amp * value noise with features `scale` pixels wide: the
 * lattice is hashed once per cell, not once per pixel. */
static int noise_add(float *out, int n, uint64_t seed, double scale, double amp)
{
	int cells = (int)(n / scale) + 2;
	float *lat = malloc(sizeof(float) * (size_t)cells * cells);
	if (!lat)
		return AT_ENOMEM;
	int *xi = malloc(sizeof(int) * (size_t)n);
	float *fx = malloc(sizeof(float) * (size_t)n);
	if (!xi || !fx) {
		free(lat);
		free(xi);
		free(fx);
		return AT_ENOMEM;
	}
	for (int j = 0; j < cells; j++)
		for (int i = 0; i < cells; i++)
			lat[(size_t)j * cells + i] = (float)lattice(seed, i, j);
	for (int x = 0; x < n; x++) { /* the same for every row */
		double f = x / scale;
		xi[x] = (int)f;
		f -= xi[x];
		fx[x] = (float)(f * f * (3 - 2 * f));
	}
	for (int y = 0; y < n; y++) {
		double fy = y / scale;
		int yi = (int)fy;
		fy -= yi;
		fy = fy * fy * (3 - 2 * fy);
		const float *l0 = lat + (size_t)yi * cells, *l1 = l0 + cells;
		float *o = out + (size_t)y * n, w1 = (float)(amp * fy), w0 = (float)amp - w1;
		for (int x = 0; x < n; x++) {
			int i = xi[x];
			float a = l0[i] + (l0[i + 1] - l0[i]) * fx[x], b = l1[i] + (l1[i + 1] - l1[i]) * fx[x];
			o[x] += a * w0 + b * w1;
		}
	}
	free(lat);
	free(xi);
	free(fx);
	return 0;
}

/* ---- sketches ---- */

/* A part's outline as a path with arc length, closed or open. */
struct path {
	int n, closed;
	double x[MAXP + 1], y[MAXP + 1], cum[MAXP + 1], len;
};

static void path_init(struct path *p, const float *x, const float *y, int n, int closed)
{
	p->n = 0;
	p->closed = closed;
	p->len = 0;
	if (n < 2)
		return;
	for (int i = 0; i < n + (closed ? 1 : 0); i++) {
		p->x[p->n] = x[i % n];
		p->y[p->n] = y[i % n];
		p->cum[p->n] =
			p->n ? p->cum[p->n - 1] + hypot(p->x[p->n] - p->x[p->n - 1], p->y[p->n] - p->y[p->n - 1]) : 0;
		p->n++;
	}
	p->len = p->cum[p->n - 1];
}

static void path_at(const struct path *p, double s, double *x, double *y)
{
	if (p->closed) {
		s = fmod(s, p->len);
		if (s < 0)
			s += p->len;
	} else {
		s = clampd(s, 0, p->len);
	}
	int i = 1;
	while (i < p->n - 1 && p->cum[i] < s)
		i++;
	double l = p->cum[i] - p->cum[i - 1], t = l > 0 ? (s - p->cum[i - 1]) / l : 0;
	*x = p->x[i - 1] + (p->x[i] - p->x[i - 1]) * t;
	*y = p->y[i - 1] + (p->y[i] - p->y[i - 1]) * t;
}

/* One drawing's hand: pen, ink and how much it wanders. */
struct hand {
	int n;
	double pen, minw, dark;
	double amp, lam, amp2, lam2, step;
};

/* Draws the path from s0 to s1 (arc length; past the end of a closed path it
 * wraps) into the ink mask: displaced sideways by two octaves of smooth
 * noise, `shift` pixels off the path, width and pressure varying along it,
 * tapered ends. */
static void stroke(struct mask *ink, struct rng *r, const struct path *p, double s0, double s1, const struct hand *h,
		   double shift)
{
	double L = s1 - s0;
	if (L < 0.5)
		return;
	uint64_t ns = rng_next(r), ws = rng_next(r);
	double dark = h->dark * rng_range(r, 0.9, 1.0), taper = h->pen * 3 + 1;
	int m = (int)ceil(L / h->step);
	double px = 0, py = 0, pw = 0;
	for (int i = 0; i <= m; i++) {
		double s = s0 + L * i / m, x, y, xa, ya, xb, yb;
		path_at(p, s, &x, &y);
		path_at(p, s - h->step, &xa, &ya);
		path_at(p, s + h->step, &xb, &yb);
		double tx = xb - xa, ty = yb - ya, tl = hypot(tx, ty);
		double nx = tl > 0 ? -ty / tl : 0, ny = tl > 0 ? tx / tl : 0;
		double off = shift + h->amp * noise1(ns, s / h->lam) + h->amp2 * noise1(ns + 1, s / h->lam2);
		x += nx * off;
		y += ny * off;
		double u = fmin(s - s0, s1 - s);
		double w = h->pen * (0.85 + 0.3 * noise1(ws, s / h->lam)) * (0.5 + 0.5 * fmin(1.0, u / taper));
		w = w < h->minw ? h->minw : w;
		if (i > 0)
			mask_capsule(ink, px, py, pw, x, y, w, dark * (0.9 + 0.1 * noise1(ws + 1, s / h->lam)));
		px = x;
		py = y;
		pw = w;
	}
}

static void sketch_part(struct mask *ink, struct mask *tmp, struct rng *r, const struct part *pa, const struct hand *h)
{
	/* a hand never lands exactly where it meant to: each part moves and
	 * scales a little on its own */
	float x[MAXP], y[MAXP];
	double mx = 0, my = 0;
	for (int i = 0; i < pa->n; i++) {
		mx += pa->x[i];
		my += pa->y[i];
	}
	mx /= pa->n;
	my /= pa->n;
	double k = rng_range(r, 0.97, 1.03), dx = rng_range(r, -1, 1) * h->n * 0.006,
	       dy = rng_range(r, -1, 1) * h->n * 0.006;
	for (int i = 0; i < pa->n; i++) {
		x[i] = (float)(mx + (pa->x[i] - mx) * k + dx);
		y[i] = (float)(my + (pa->y[i] - my) * k + dy);
	}
	int closed = (pa->flags & PF_CLOSED) != 0;
	if (closed) {
		/* what this part covers hides the lines behind it */
		mask_poly(tmp, pa->x, pa->y, pa->n);
		for (int yy = tmp->y0; yy <= tmp->y1; yy++)
			for (int xx = tmp->x0; xx <= tmp->x1; xx++) {
				size_t i = (size_t)yy * h->n + xx;
				float v = ink->m[i] * (1 - tmp->m[i]);
				if (pa->flags & PF_FILL_SKETCH && tmp->m[i] * h->dark > v)
					v = (float)(tmp->m[i] * h->dark);
				ink->m[i] = v;
			}
		mask_touch(ink, tmp->x0, tmp->y0, tmp->x1, tmp->y1);
		mask_clear(tmp);
	}
	struct path p;
	path_init(&p, x, y, pa->n, closed && !(pa->flags & PF_OPEN_SKETCH));
	if (p.len < 1)
		return;
	double a, b;
	if (p.closed) {
		/* starts anywhere; ends short (a gap) or past the start (overshoot);
		 * a long outline is sometimes drawn in two strokes */
		double end = clampd(rng_range(r, -0.025, 0.03) * h->n, -0.12 * p.len, 0.12 * p.len);
		a = rng_range(r, 0, p.len);
		b = a + p.len + end;
		if (p.len > 0.6 * h->n && rng_chance(r, 0.35)) {
			double f = a + p.len * rng_range(r, 0.35, 0.65);
			stroke(ink, r, &p, a, f + rng_range(r, -0.01, 0.015) * h->n, h, 0);
			stroke(ink, r, &p, f, b, h, 0);
		} else {
			stroke(ink, r, &p, a, b, h, 0);
		}
	} else {
		a = p.len * rng_range(r, 0, 0.04);
		b = p.len * (1 - rng_range(r, 0, 0.04));
		stroke(ink, r, &p, a, b, h, 0);
	}
	if (rng_chance(r, 0.12)) /* traced again, a little off and not all the way */
		stroke(ink, r, &p, a + (b - a) * rng_range(r, 0, 0.4), b - (b - a) * rng_range(r, 0, 0.2), h,
		       h->pen * rng_range(r, 0.8, 2.0) * (rng_chance(r, 0.5) ? 1 : -1));
}

static int render_sketch(struct rng *r, int cls, int n, uint8_t *gray, struct synth_info *info)
{
	struct object *o = malloc(sizeof *o);
	struct mask ink = {0}, tmp = {0};
	int rc = o ? 0 : AT_ENOMEM;
	if (rc == 0)
		rc = mask_new(&ink, n);
	if (rc == 0)
		rc = mask_new(&tmp, n);
	if (rc < 0)
		goto out;
	object_build(o, r, cls, n);
	struct hand h = {.n = n};
	/* 1..4 px at 256, log-uniform; never thinner than a visible line */
	h.pen = exp(rng_range(r, 0, log(4.0))) * n / 256.0;
	/* below 64 px a thinner line would not survive a resample (prepare's
	 * crop-and-scale augmentation) as ink */
	h.minw = n >= 128 ? 0.9 : n >= 64 ? 1.15 : 1.6;
	h.pen = h.pen < h.minw ? h.minw : h.pen;
	h.dark = rng_range(r, 0.78, 1.0);
	h.amp = n * rng_range(r, 0.002, 0.006);
	h.lam = n * rng_range(r, 0.06, 0.16);
	h.amp2 = n * rng_range(r, 0.002, 0.007);
	h.lam2 = n * rng_range(r, 0.3, 0.5);
	h.step = fmax(0.75, n / 128.0);
	for (int i = 0; i < o->n; i++)
		sketch_part(&ink, &tmp, r, &o->p[i], &h);
	for (size_t i = 0; i < (size_t)n * n; i++) {
		double v = 255.0 * (1 - ink.m[i]) + 0.5;
		gray[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
	if (info)
		info->pen = h.pen;
out:
	mask_free(&ink);
	mask_free(&tmp);
	free(o);
	return rc;
}

/* ---- paintings ---- */

/* A style family: how it moves colours, fills, outlines and dabs. Colours
 * move by saturation and value and by mixing toward a tint (warm, cool,
 * earth), never by rotating hue: a yellow sun stays yellow in every family. */
static const struct style {
	float tint[3], tint_a, sat_mul, sat_add, val_mul, val_add;
	float shade, mottle, fill_alpha;
	float outline_w, outline_a; /* width as a fraction of the canvas; 0: none */
	float outline_rgb[3];       /* r < 0: a darker shade of the fill */
	float dabs;                 /* per pixel */
	float len0, len1, w0, w1, dab_a, dab_vj, dab_hj, angle;
	float grain;
} styles[SYNTH_FAMILIES] = {
	[SYNTH_IMPRESSIONIST] =
		{{1.0f, 0.72f, 0.4f}, 0.14f,     1.0f,  0.1f,   0.9f,   0.1f,   0.2f, 0.05f, 1.0f,  0,    0,
		 {0, 0, 0},           1 / 22.0f, 0.02f, 0.045f, 0.009f, 0.018f, 0.8f, 0.12f, 0.07f, 0.6f, 0.03f},
	[SYNTH_WATERCOLOUR] =
		{{0.55f, 0.7f, 0.95f}, 0.16f,      0.8f,  0.0f,  0.6f,  0.4f,  0.15f, 0.1f,  0.85f, 0.006f, 0.5f,
		 {-1, 0, 0},           1 / 120.0f, 0.04f, 0.08f, 0.02f, 0.04f, 0.2f,  0.05f, 0.02f, 0.2f,   0.03f},
	[SYNTH_POSTER] = {{0, 0, 0},  0.0f,   1.25f, 0.15f,  1.0f,  0.05f,
			  0.05f,      0.012f, 1.0f,  0.014f, 1.0f,  {0.06f, 0.05f, 0.07f},
			  1 / 200.0f, 0.03f,  0.06f, 0.02f,  0.03f, 0.25f,
			  0.06f,      0.0f,   0.0f,  0.02f},
	[SYNTH_OIL] =
		{{0.42f, 0.3f, 0.16f},  0.18f,     0.95f, 0.0f,   0.8f,  0.0f,   0.3f,  0.06f, 1.0f,  0.008f, 0.55f,
		 {0.22f, 0.14f, 0.08f}, 1 / 26.0f, 0.03f, 0.075f, 0.01f, 0.024f, 0.65f, 0.1f,  0.03f, 1.2f,   0.02f},
};

/* A natural colour (hsv) as the family paints it. */
static void family_rgb(const struct style *st, double h, double s, double v, double out[3])
{
	hsv(h, s * st->sat_mul + st->sat_add, v * st->val_mul + st->val_add, out);
	for (int c = 0; c < 3; c++) {
		out[c] += (st->tint[c] - out[c]) * st->tint_a;
		if (st == &styles[SYNTH_POSTER]) /* printing inks: a few levels */
			out[c] = floor(out[c] * 8 + 0.5) / 8;
	}
}

struct painter {
	struct canvas c;
	struct mask k;
	const struct style *st;
	float *field; /* smooth noise, n*n, for mottling fills */
	double col[R_ROLES][3];
};

/* Paints the mask's coverage with col: shaded darker to the lower right,
 * mottled by the noise field; clears the mask. */
static void apply_fill(struct painter *pt, const double col[3], double alpha, double shade)
{
	struct mask *k = &pt->k;
	int n = k->n;
	double cx = (k->x0 + k->x1) / 2.0, cy = (k->y0 + k->y1) / 2.0;
	double R = hypot(k->x1 - k->x0, k->y1 - k->y0) / 2 + 1;
	for (int y = k->y0; y <= k->y1; y++)
		for (int x = k->x0; x <= k->x1; x++) {
			size_t i = (size_t)y * n + x;
			float a = k->m[i];
			if (a <= 0)
				continue;
			double g = ((x - cx) * 0.6 + (y - cy) * 0.8) / R, f = pt->field[i];
			double mul = 1 - shade * g * 0.5, px[3];
			for (int c = 0; c < 3; c++)
				px[c] = col[c] * mul + pt->st->mottle * f;
			/* a translucent wash pools unevenly */
			double aa = pt->st->fill_alpha < 1 ? alpha * (pt->st->fill_alpha + (1 - pt->st->fill_alpha) * f)
							   : alpha;
			blend(&pt->c, x, y, px, a * aa);
		}
	mask_clear(k);
}

static void mask_polyline(struct mask *k, const float *x, const float *y, int n, int closed, double w)
{
	for (int i = 1; i < n + (closed ? 1 : 0); i++) {
		int j = i % n;
		mask_capsule(k, x[i - 1], y[i - 1], w, x[j], y[j], w, 1.0);
	}
}

/* The instance's colours: every role's natural colour, varied, then moved
 * by the family. Some roles pick among a few natural choices. */
static void pick_colours(struct painter *pt, struct rng *r)
{
	double shift = rng_range(r, -0.03, 0.03);
	for (int i = 0; i < R_ROLES; i++) {
		double h = role_hsv[i].hj >= 0.5 ? rng_unit(r)
						 : role_hsv[i].h + rng_range(r, -role_hsv[i].hj, role_hsv[i].hj);
		double s = role_hsv[i].s * rng_range(r, 0.85, 1.1), v = role_hsv[i].v * rng_range(r, 0.9, 1.06);
		if (i == R_FUR && rng_chance(r, 0.4)) { /* gray, black or white cats */
			s = 0.06;
			v = rng_range(r, 0.2, 0.95);
		} else if (i == R_WALL && rng_chance(r, 0.25)) { /* brick */
			h = 0.02;
			s = 0.6;
			v = 0.65;
		} else if ((i == R_HULL || i == R_SAIL) && rng_chance(r, 0.3)) {
			h = rng_unit(r);
			s = 0.65;
		}
		if (i == R_FIN) /* a fish's fins follow its body: set below */
			continue;
		family_rgb(pt->st, h + shift, s, v, pt->col[i]);
	}
	for (int c = 0; c < 3; c++)
		pt->col[R_FIN][c] = pt->col[R_FISH][c] * 0.75;
	/* the eye must stand out from the fur even when both came out alike */
	if (fabs(pt->col[R_EYE][1] - pt->col[R_FUR][1]) < 0.15 && fabs(pt->col[R_EYE][0] - pt->col[R_FUR][0]) < 0.15)
		family_rgb(pt->st, 0.3, 0.8, 0.9, pt->col[R_EYE]);
}

static void paint_background(struct painter *pt, struct rng *r, enum background bg, double horizon)
{
	int n = pt->c.n;
	double t0[3], t1[3], b0[3], b1[3];
	const struct style *st = pt->st;
	int sunset = rng_chance(r, 0.2);
	/* natural hsv of the upper and lower halves, two stops each */
	double sky0[3] = {0.58, 0.45, 0.85}, sky1[3] = {0.56, 0.2, 0.97};
	if (sunset) {
		sky0[0] = 0.64, sky0[1] = 0.4, sky0[2] = 0.7;
		sky1[0] = 0.07, sky1[1] = 0.5, sky1[2] = 1.0;
	}
	static const double grounds[3][2][3] = {{{0.27, 0.5, 0.62}, {0.25, 0.55, 0.45}},
						{{0.12, 0.45, 0.72}, {0.1, 0.5, 0.55}},
						{{0.3, 0.45, 0.5}, {0.33, 0.5, 0.35}}};
	int g = rng_int(r, 3);
	double hj = rng_range(r, -0.02, 0.02);
	switch (bg) {
	case BG_LAND:
	case BG_SKY:
		family_rgb(st, sky0[0] + hj, sky0[1], sky0[2], t0);
		family_rgb(st, sky1[0] + hj, sky1[1], sky1[2], t1);
		family_rgb(st, grounds[g][0][0] + hj, grounds[g][0][1], grounds[g][0][2], b0);
		family_rgb(st, grounds[g][1][0] + hj, grounds[g][1][1], grounds[g][1][2], b1);
		break;
	case BG_SEA:
		family_rgb(st, sky0[0] + hj, sky0[1], sky0[2], t0);
		family_rgb(st, sky1[0] + hj, sky1[1], sky1[2], t1);
		family_rgb(st, 0.55 + hj, 0.55, 0.62, b0);
		family_rgb(st, 0.6 + hj, 0.65, 0.4, b1);
		break;
	case BG_WATER:
		family_rgb(st, 0.5 + hj, 0.5, 0.78, t0);
		family_rgb(st, 0.56 + hj, 0.6, 0.55, t1);
		memcpy(b0, t1, sizeof b0);
		family_rgb(st, 0.6 + hj, 0.7, 0.35, b1);
		break;
	case BG_NIGHT:
		family_rgb(st, 0.66 + hj, 0.7, 0.16, t0);
		family_rgb(st, 0.62 + hj, 0.6, 0.42, t1);
		memcpy(b0, t1, sizeof b0);
		memcpy(b1, t1, sizeof b1);
		break;
	default: { /* a plain wall of any colour */
		double h = rng_unit(r), s = rng_range(r, 0.15, 0.35);
		family_rgb(st, h, s, 0.85, t0);
		family_rgb(st, h, s, 0.72, t1);
		memcpy(b0, t1, sizeof b0);
		family_rgb(st, h, s, 0.6, b1);
		break;
	}
	}
	if (bg == BG_SKY || bg == BG_NIGHT || bg == BG_PLAIN)
		horizon = bg == BG_PLAIN ? n * 0.5 : n; /* no ground; the wall still darkens downwards */
	uint64_t hs = rng_next(r);
	double hz[4096]; /* the horizon wavers: its height per column */
	for (int x = 0; x < n; x++)
		hz[x] = horizon + n * 0.02 * noise1(hs, x / (n / 4.0));
	for (int y = 0; y < n; y++)
		for (int x = 0; x < n; x++) {
			double h = hz[x];
			size_t i = (size_t)y * n + x;
			int up = y < h;
			double t = up ? y / (h > 1 ? h : 1) : (y - h) / (n - h > 1 ? n - h : 1);
			t = clampd(t + 0.15 * pt->field[i], 0, 1);
			const double *a = up ? t0 : b0, *b = up ? t1 : b1;
			float *p = pt->c.px + i * 3;
			for (int c = 0; c < 3; c++)
				p[c] = (float)(a[c] + (b[c] - a[c]) * t + st->mottle * 0.6 * pt->field[i]);
		}
	if (bg == BG_NIGHT) { /* a few far stars */
		double w[3] = {1, 1, 0.9};
		int k = 6 + rng_int(r, 10);
		for (int i = 0; i < k; i++) {
			double x = rng_range(r, 0, n), y = rng_range(r, 0, n * 0.8), d = fmax(0.9, n / 160.0);
			mask_capsule(&pt->k, x, y, d, x, y, d, 1.0);
		}
		apply_fill(pt, w, 0.8, 0);
	}
}

/* Oriented dabs along a smooth direction field, each picking up the colour
 * beneath it and changing it a little: the brush texture. */
static void paint_dabs(struct painter *pt, struct rng *r)
{
	const struct style *st = pt->st;
	int n = pt->c.n, nd = (int)(st->dabs * n * n);
	uint64_t ds = rng_next(r);
	for (int i = 0; i < nd; i++) {
		double x = rng_range(r, 0, n), y = rng_range(r, 0, n);
		double ang = st->angle + 1.8 * value_noise(ds, x, y, n / 3.0);
		double len = n * rng_range(r, st->len0, st->len1), w = fmax(0.8, n * rng_range(r, st->w0, st->w1));
		const float *p = pt->c.px + ((size_t)(int)y * n + (int)x) * 3;
		double v = 1 + st->dab_vj * rng_range(r, -1, 1), col[3];
		for (int c = 0; c < 3; c++)
			col[c] = p[c] * v + st->dab_hj * rng_range(r, -1, 1);
		double dx = cos(ang) * len / 2, dy = sin(ang) * len / 2;
		/* one capsule: no joints, so straight onto the canvas */
		double ax = x - dx, ay = y - dy, bx = x + dx, by = y + dy, hw = w / 2 + 0.5;
		int x0 = (int)fmax(0, floor(fmin(ax, bx) - hw)), x1 = (int)fmin(n - 1, ceil(fmax(ax, bx) + hw));
		int y0 = (int)fmax(0, floor(fmin(ay, by) - hw)), y1 = (int)fmin(n - 1, ceil(fmax(ay, by) + hw));
		double ex = bx - ax, ey = by - ay, l2 = ex * ex + ey * ey;
		for (int yy = y0; yy <= y1; yy++)
			for (int xx = x0; xx <= x1; xx++) {
				double qx = xx + 0.5 - ax, qy = yy + 0.5 - ay,
				       t = l2 > 0 ? (qx * ex + qy * ey) / l2 : 0;
				t = t < 0 ? 0 : t > 1 ? 1 : t;
				double fx = qx - t * ex, fy = qy - t * ey, d2 = fx * fx + fy * fy;
				double reach = w * (0.5 - 0.2 * t) + 0.5; /* thinner at the lift */
				if (d2 >= reach * reach)
					continue;
				double cov = reach - sqrt(d2);
				blend(&pt->c, xx, yy, col, (cov > 1 ? 1 : cov) * st->dab_a);
			}
	}
}

static void paint_part(struct painter *pt, struct rng *r, const struct object *o, const struct part *pa)
{
	const struct style *st = pt->st;
	int n = pt->c.n;
	const double *col = pt->col[pa->role];
	if (pa->flags & PF_SKETCH_ONLY)
		return;
	if (!(pa->flags & PF_CLOSED)) {
		mask_polyline(&pt->k, pa->x, pa->y, pa->n, 0, fmax(1.0, pa->w * o->scale));
		apply_fill(pt, col, 1.0, 0);
		return;
	}
	mask_poly(&pt->k, pa->x, pa->y, pa->n);
	apply_fill(pt, col, 1.0, st->shade);
	if (st->outline_w <= 0)
		return;
	double w = fmax(1.0, st->outline_w * n * rng_range(r, 0.8, 1.2)), oc[3];
	for (int c = 0; c < 3; c++)
		oc[c] = st->outline_rgb[0] < 0 ? col[c] * 0.65 : st->outline_rgb[c];
	mask_polyline(&pt->k, pa->x, pa->y, pa->n, 1, w);
	apply_fill(pt, oc, st->outline_a, 0);
}

static int render_painting(struct rng *r, int cls, int family, int n, uint8_t *rgb)
{
	struct painter pt = {0};
	struct object *o = malloc(sizeof *o);
	int rc = o ? 0 : AT_ENOMEM;
	if (rc == 0)
		rc = canvas_new(&pt.c, n);
	if (rc == 0)
		rc = mask_new(&pt.k, n);
	if (rc == 0 && !(pt.field = calloc((size_t)n * n, sizeof(float))))
		rc = AT_ENOMEM;
	if (rc < 0)
		goto out;
	pt.st = &styles[family];
	object_build(o, r, cls, n);
	uint64_t fs = rng_next(r);
	if ((rc = noise_add(pt.field, n, fs, n / 14.0 + 1, 0.6)) < 0 ||
	    (rc = noise_add(pt.field, n, fs + 1, n / 4.0 + 1, 0.4)) < 0)
		goto out;
	pick_colours(&pt, r);
	double horizon = o->gy;
	if (cls == SYNTH_MOUNTAIN)
		horizon -= n * rng_range(r, 0.0, 0.04);
	else if (classes[cls].bg == BG_LAND)
		horizon -= n * rng_range(r, 0.05, 0.2);
	horizon = clampd(horizon, n * 0.25, n * 0.95);
	paint_background(&pt, r, classes[cls].bg, horizon);
	for (int i = 0; i < o->n; i++)
		paint_part(&pt, r, o, &o->p[i]);
	paint_dabs(&pt, r);
	/* finish: canvas grain; posters flatten to few levels; oil yellows */
	uint64_t gs = rng_next(r);
	for (size_t i = 0; i < (size_t)n * n; i++) {
		double g = pt.st->grain * ((double)(splitmix64_mix(gs + i) >> 11) * 0x1.0p-52 - 1.0);
		float *p = pt.c.px + i * 3;
		for (int c = 0; c < 3; c++) {
			double v = p[c] + g;
			if (family == SYNTH_OIL)
				v *= c == 0 ? 1.0 : c == 1 ? 0.95 : 0.82;
			p[c] = (float)v;
		}
	}
	quantise(&pt.c, rgb);
out:
	free(pt.field);
	mask_free(&pt.k);
	free(pt.c.px);
	free(o);
	return rc;
}

/* ---- entry points ---- */

int synth_sketch_of(uint64_t seed, int cls, int size, uint8_t *gray, struct synth_info *info)
{
	if (check_args(size, gray) < 0 || cls < 0 || cls >= SYNTH_CLASSES)
		return AT_EINVAL;
	uint64_t s = stream_of(seed, DOMAIN_SKETCH);
	struct rng r = {s};
	rng_next(&r); /* the class draw, kept so that a forced class draws the same instance */
	if (info) {
		info->cls = cls;
		info->family = -1;
		info->stream = s;
	}
	return render_sketch(&r, cls, size, gray, info);
}

int synth_sketch(uint64_t seed, int size, uint8_t *gray, struct synth_info *info)
{
	struct rng r = {stream_of(seed, DOMAIN_SKETCH)};
	return synth_sketch_of(seed, rng_int(&r, SYNTH_CLASSES), size, gray, info);
}

int synth_painting_of(uint64_t seed, int cls, int family, int size, uint8_t *rgb, struct synth_info *info)
{
	if (check_args(size, rgb) < 0 || cls < 0 || cls >= SYNTH_CLASSES || family < -1 || family >= SYNTH_FAMILIES)
		return AT_EINVAL;
	uint64_t s = stream_of(seed, DOMAIN_PAINTING);
	struct rng r = {s};
	rng_next(&r); /* the class draw */
	int f = rng_int(&r, SYNTH_FAMILIES);
	if (family >= 0)
		f = family;
	if (info) {
		info->cls = cls;
		info->family = f;
		info->pen = 0;
		info->stream = s;
	}
	return render_painting(&r, cls, f, size, rgb);
}

int synth_painting(uint64_t seed, int size, uint8_t *rgb, struct synth_info *info)
{
	struct rng r = {stream_of(seed, DOMAIN_PAINTING)};
	return synth_painting_of(seed, rng_int(&r, SYNTH_CLASSES), -1, size, rgb, info);
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
					double dx = (x + 0.5 - cx) / rad, dy = (y + 0.5 - cy) / rad,
					       d2 = dx * dx + dy * dy;
					double edge = (1 - sqrt(d2)) * rad + 0.5; /* antialiased rim */
					if (edge <= 0)
						continue;
					double nz = d2 < 1 ? sqrt(1 - d2) : 0;
					double lam = dx * lx + dy * ly + nz * lz,
					       shade = 0.25 + 0.75 * (lam > 0 ? lam : 0);
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

/* ---- as the train stage sees them ---- */

int synth_sketch_as_trained(uint64_t seed, int size, uint8_t *gray)
{
	uint8_t *g = malloc((size_t)SYNTH_STORED * SYNTH_STORED), *n = malloc((size_t)SYNTH_STORED * SYNTH_STORED);
	int rc = g && n ? 0 : AT_ENOMEM;
	if (rc == 0)
		rc = synth_sketch(seed, SYNTH_STORED, g, NULL);
	if (rc == 0)
		rc = sketchnorm_apply(g, SYNTH_STORED, SYNTH_STORED, SYNTH_STORED, NULL, n, NULL);
	if (rc == 0)
		rc = sketchnorm_apply(n, SYNTH_STORED, SYNTH_STORED, size, NULL, gray, NULL);
	free(g);
	free(n);
	return rc;
}

int synth_painting_as_trained(uint64_t seed, int size, uint8_t *rgb)
{
	uint8_t *p = malloc((size_t)SYNTH_STORED * SYNTH_STORED * 3);
	int rc = p ? synth_painting(seed, SYNTH_STORED, p, NULL) : AT_ENOMEM;
	if (rc == 0)
		rc = image_fit(p, SYNTH_STORED, SYNTH_STORED, 3, rgb, size);
	free(p);
	return rc;
}
