/*
 * sketchify.c — see sketchify.h.
 *
 * Pixel-wise steps (mask, background, gray, crop, invert, hysteresis) are C
 * over plain buffers; the neighbourhood operations the seed took from an image
 * library (Gaussian blur, Canny, morphological dilation) are libvips on memory
 * images. vips_canny stops at non-maximum suppression, so the double threshold
 * with hysteresis is done here.
 *
 * This is the only libvips user in lib/: it starts libvips itself
 * (vips_once), so that binaries which only decode images (atelierd, the
 * serving process) neither link nor initialise it.
 */
#include "sketchify.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "image.h"

void sketchify_opts_init(struct sketchify_opts *o)
{
	memset(o, 0, sizeof *o);
	o->size = 256;
	o->bg_threshold = 235;
	o->invert = 1;
	o->blur_sigma = 1.2;
	o->canny_sigma = 1.0;
	o->low = 2.0;
	o->high = 5.0;
	o->dilate = 1;
	o->color_edges = 1;
	o->min_ink = 0.002;
}

/* ---- libvips start-up ---- */

static pthread_once_t vips_once_ctl = PTHREAD_ONCE_INIT;
static int vips_once_rc;

static void vips_once_fn(void)
{
	/* libvips loads its dynamic modules (ImageMagick, poppler, HEIF/x265,
	 * OpenSlide, JPEG XL) from $VIPSHOME/lib/vips-modules-* at init. We only
	 * hand it memory images: pointing VIPSHOME at nothing keeps those
	 * parsers away and ~6 MB of libraries out of the process.
	 * ATELIER_VIPS_MODULES=1 restores the default. */
	const char *mods = getenv("ATELIER_VIPS_MODULES");
	if (!getenv("VIPSHOME") && !(mods && strcmp(mods, "1") == 0))
		setenv("VIPSHOME", "/nonexistent/atelier-no-vips-modules", 0);
	if (VIPS_INIT("atelier")) {
		vips_once_rc = AT_EINTERNAL;
		return;
	}
	vips_block_untrusted_set(TRUE);
	/* Callers run many images in parallel (the uv threadpool); vips' own
	 * threads would only contend, and its operation cache would keep
	 * images alive. */
	vips_concurrency_set(1);
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_cache_set_max_files(0);
}

/* Starts libvips once (thread-safe, idempotent). */
static int vips_once(void)
{
	pthread_once(&vips_once_ctl, vips_once_fn);
	return vips_once_rc;
}

static void set_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t whylen, const char *fmt, ...)
{
	if (!why || !whylen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Keeps pixels reachable from a strong one (>= high) through weak ones
 * (>= low), 8-connected. edges: 255 kept, 0 not. */
static int hysteresis(const float *mag, int n, double low, double high, uint8_t *edges)
{
	size_t npix = (size_t)n * n, top = 0;
	uint32_t *stack = malloc(sizeof(uint32_t) * npix);
	if (!stack)
		return AT_ENOMEM;
	memset(edges, 0, npix);
	for (size_t i = 0; i < npix; i++) {
		if (mag[i] < high || edges[i])
			continue;
		edges[i] = 255;
		stack[top++] = (uint32_t)i;
		while (top) {
			uint32_t p = stack[--top];
			int x = (int)(p % (uint32_t)n), y = (int)(p / (uint32_t)n);
			for (int dy = -1; dy <= 1; dy++) {
				for (int dx = -1; dx <= 1; dx++) {
					int xx = x + dx, yy = y + dy;
					if (xx < 0 || yy < 0 || xx >= n || yy >= n)
						continue;
					size_t q = (size_t)yy * n + xx;
					if (!edges[q] && mag[q] >= low) {
						edges[q] = 255;
						stack[top++] = (uint32_t)q; /* each pixel pushed once */
					}
				}
			}
		}
	}
	free(stack);
	return 0;
}

/* Runs `op` on a size×size uchar buffer through libvips; the result goes to
 * dst as uchar (blur, dilate) or float (Canny's magnitude). */
enum vop { VOP_BLUR, VOP_CANNY, VOP_DILATE };

static int vips_step(const uint8_t *buf, int n, int bands, enum vop op, double a, void *dst, char *why, size_t whylen)
{
	VipsImage *in = vips_image_new_from_memory(buf, (size_t)n * n * bands, n, n, bands, VIPS_FORMAT_UCHAR),
		  *out = NULL, *t = NULL, *mask = NULL;
	if (!in)
		return AT_ENOMEM;
	VipsBandFormat want = op == VOP_CANNY ? VIPS_FORMAT_FLOAT : VIPS_FORMAT_UCHAR;
	int r = 0;
	switch (op) {
	case VOP_BLUR: r = vips_gaussblur(in, &out, a, NULL); break;
	case VOP_CANNY: r = vips_canny(in, &out, "sigma", a, NULL); break;
	case VOP_DILATE: {
		int rad = (int)a, side = 2 * rad + 1;
		mask = vips_image_new_matrix(side, side);
		for (int y = 0; mask && y < side; y++)
			for (int x = 0; x < side; x++)
				*VIPS_MATRIX(mask, x, y) =
					(x - rad) * (x - rad) + (y - rad) * (y - rad) <= rad * rad + rad ? 255 : 128;
		r = mask ? vips_morph(in, &out, mask, VIPS_OPERATION_MORPHOLOGY_DILATE, NULL) : -1;
		break;
	}
	}
	if (r == 0 && vips_image_get_format(out) != want) {
		r = vips_cast(out, &t, want, NULL);
		g_object_unref(out);
		out = t;
	}
	size_t sz = 0, want_sz = (size_t)n * n * bands * (want == VIPS_FORMAT_FLOAT ? sizeof(float) : 1);
	void *mem = r == 0 ? vips_image_write_to_memory(out, &sz) : NULL;
	int rc = 0;
	if (!mem || sz != want_sz) {
		char *msg = vips_error_buffer_copy();
		set_why(why, whylen, "libvips: %s", msg && *msg ? msg : "operation failed");
		g_free(msg);
		rc = AT_EINTERNAL;
	} else {
		memcpy(dst, mem, sz);
	}
	g_free(mem);
	if (out)
		g_object_unref(out);
	if (mask)
		g_object_unref(mask);
	g_object_unref(in);
	return rc;
}

int sketchify(const uint8_t *src, int w, int h, int channels, const uint8_t *mask, const struct sketchify_opts *opts,
	      uint8_t *out, double *ink_ratio, char *why, size_t whylen)
{
	struct sketchify_opts def;
	if (!opts) {
		sketchify_opts_init(&def);
		opts = &def;
	}
	int n = opts->size;
	if (!src || w <= 0 || h <= 0 || (channels != 1 && channels != 3) || n <= 0 || n > 8192 || opts->low < 0 ||
	    opts->high < opts->low || opts->dilate < 0 || opts->dilate > 16) {
		set_why(why, whylen, "bad sketchify arguments");
		return AT_EINVAL;
	}
	int rc = vips_once();
	if (rc < 0) {
		set_why(why, whylen, "libvips failed to start");
		return rc;
	}
	/* colour edges: Canny per channel, strongest wins — shapes that differ
	 * in hue but not in brightness still get their outline */
	int c = channels == 3 && opts->color_edges ? 3 : 1;
	size_t npix = (size_t)w * h, nn = (size_t)n * n;
	uint8_t *work = malloc(npix * c), *sq = malloc(nn * c), *edges = malloc(nn);
	float *mag = malloc(sizeof(float) * nn * c);
	if (!work || !sq || !edges || !mag) {
		rc = AT_ENOMEM;
		goto out;
	}
	/* mask and background removal */
	for (size_t i = 0; i < npix; i++) {
		const uint8_t *p = src + i * channels;
		uint8_t *q = work + i * c;
		int bg = mask && !mask[i];
		if (!bg && opts->bg_threshold > 0)
			bg = channels == 1 ? p[0] >= opts->bg_threshold
					   : p[0] >= opts->bg_threshold && p[1] >= opts->bg_threshold &&
						     p[2] >= opts->bg_threshold;
		if (bg)
			memset(q, 255, c);
		else
			image_convert(p, channels, q, c, 1);
	}
	/* centre square → size×size */
	int side = w < h ? w : h, ox = (w - side) / 2, oy = (h - side) / 2;
	if (side != w || side != h) {
		for (int y = 0; y < side; y++)
			memmove(work + (size_t)y * side * c, work + ((size_t)(oy + y) * w + ox) * c, (size_t)side * c);
	}
	rc = image_resize(work, side, side, c, sq, n, n);
	if (rc < 0)
		goto out;
	if (opts->invert)
		for (size_t i = 0; i < nn * c; i++)
			sq[i] = (uint8_t)(255 - sq[i]);
	if (opts->blur_sigma > 0 && (rc = vips_step(sq, n, c, VOP_BLUR, opts->blur_sigma, sq, why, whylen)) < 0)
		goto out;
	rc = vips_step(sq, n, c, VOP_CANNY, opts->canny_sigma > 0 ? opts->canny_sigma : 1.0, mag, why, whylen);
	if (rc < 0)
		goto out;
	for (size_t i = 0; c > 1 && i < nn; i++) {
		float m = mag[i * c];
		for (int k = 1; k < c; k++)
			m = mag[i * c + k] > m ? mag[i * c + k] : m;
		mag[i] = m;
	}
	if ((rc = hysteresis(mag, n, opts->low, opts->high, edges)) < 0)
		goto out;
	if (opts->dilate > 0 && (rc = vips_step(edges, n, 1, VOP_DILATE, opts->dilate, edges, why, whylen)) < 0)
		goto out;
	size_t ink = 0;
	for (size_t i = 0; i < (size_t)n * n; i++) {
		out[i] = edges[i] ? 0 : 255;
		ink += edges[i] != 0;
	}
	double ratio = (double)ink / ((double)n * n);
	if (ink_ratio)
		*ink_ratio = ratio;
	if (ratio < opts->min_ink) {
		set_why(why, whylen, "blank sketch: ink ratio %.5f under %g", ratio, opts->min_ink);
		rc = AT_EUNPROCESSABLE;
	}
out:
	free(work);
	free(sq);
	free(edges);
	free(mag);
	return rc;
}
