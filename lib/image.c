/*
 * image.c — see image.h.
 *
 * Ingest decodes every upload and stores every normalised image, so the
 * common PNG — 8-bit, non-interlaced — is decoded here (chunk walk, zlib's
 * crc32 and raw inflate, the five PNG row filters), and normalised sketches
 * are written by a small fixed-Huffman deflate that only looks for runs and
 * repeats of the row above: exactly what sketches are made of. bench/image
 * measures both against libpng, libspng, zlib and libdeflate on synthetic
 * uploads, stored sketches and paintings (docs/design.md, "PNG: our code and
 * the libraries'"): the decoder takes 18-36 % less CPU than the faster of
 * libpng and libspng with the same checks, except on RGBA with Paeth on every
 * row (10 % more; libpng has SSE2 code for it); the encoder writes a stored
 * sketch in 0.054 ms where zlib level 1 takes 0.19 ms and libdeflate level 1
 * 0.19 ms. Other PNGs (16-bit, interlaced, sub-byte, colour keys, unknown
 * critical chunks) go through libpng, which is also the reference the tests
 * check the fast path against; JPEG goes through libjpeg-turbo.
 *
 * Why not libvips (as before): it is not needed for two formats, and linking
 * it brings ~100 shared libraries (librsvg, OpenEXR, HDF5, ICU, ...) into
 * every process that decodes an upload — ~12 MB of resident memory in
 * atelierd, which only ever reads PNG and JPEG. lib/sketchify.c, which needs
 * its blur, Canny and morphology, starts libvips itself.
 *
 * Invariants: the pixel count is checked against max_pixels, and each side
 * against IMAGE_MAX_SIDE, from the header alone before anything is allocated
 * for pixels (dims_check); all conversion after
 * decoding (alpha flattening, gray, resize, padding) is this file's own C, so
 * both decoders give identical pixels for identical input.
 */
#include "image.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>

#include <jerror.h>
#include <jpeglib.h>
#include <openssl/evp.h>
#include <png.h>
#include <zlib.h>

#include "fsutil.h"
#include "sketchnorm.h"

/* A positive "not for the fast decoder, ask libpng" answer. */
#define FAST_PNG_FALLBACK 1

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

/*
 * The header's dimensions against the caps, for every decoder and
 * image_probe(): the pixel count first (its message is the older one), then
 * each side. Both answer AT_EUNPROCESSABLE, like every other cap on what an
 * image holds.
 */
static int dims_check(uint64_t w, uint64_t h, uint64_t max_pixels, char *why, size_t whylen)
{
	if (w * h > max_pixels) {
		set_why(why, whylen, "image is %llux%llu, more than %llu pixels", (unsigned long long)w,
			(unsigned long long)h, (unsigned long long)max_pixels);
		return AT_EUNPROCESSABLE;
	}
	if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE) {
		set_why(why, whylen, "image is %llux%llu: its %s (%llu) is over the cap of %d pixels a side",
			(unsigned long long)w, (unsigned long long)h, w > IMAGE_MAX_SIDE ? "width" : "height",
			(unsigned long long)(w > IMAGE_MAX_SIDE ? w : h), IMAGE_MAX_SIDE);
		return AT_EUNPROCESSABLE;
	}
	return 0;
}

/* ---- init ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;
static EVP_MD *sha256_md;

static uint32_t lit_bits[288]; /* fixed Huffman codes, bit-reversed for the LSB-first stream */
static uint8_t lit_nbits[288];
static uint32_t len_comp[259]; /* length 3..258: code + extra bits, ready to emit */
static uint8_t len_compbits[259];

static uint32_t bit_reverse(uint32_t v, int n)
{
	uint32_t r = 0;
	for (int i = 0; i < n; i++)
		r |= ((v >> i) & 1u) << (n - 1 - i);
	return r;
}

static const uint16_t len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
				      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
				      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
				       33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
				       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
				       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void tables_build(void)
{
	/* RFC 1951 3.2.6 fixed literal/length code. */
	for (int s = 0; s < 288; s++) {
		uint32_t code;
		int nb;
		if (s < 144)
			code = 0x30 + s, nb = 8;
		else if (s < 256)
			code = 0x190 + (s - 144), nb = 9;
		else if (s < 280)
			code = s - 256, nb = 7;
		else
			code = 0xc0 + (s - 280), nb = 8;
		lit_bits[s] = bit_reverse(code, nb);
		lit_nbits[s] = (uint8_t)nb;
	}
	for (int l = 3; l <= 258; l++) {
		int i = 28;
		while (len_base[i] > l)
			i--;
		int sym = 257 + i;
		len_comp[l] = lit_bits[sym] | ((uint32_t)(l - len_base[i]) << lit_nbits[sym]);
		len_compbits[l] = (uint8_t)(lit_nbits[sym] + len_extra[i]);
	}
}

static void init_once_fn(void)
{
	tables_build();
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256_md)
		init_rc = AT_EINTERNAL;
}

int image_init(void)
{
	pthread_once(&init_once, init_once_fn);
	return init_rc;
}

void image_opts_init(struct image_opts *o, enum image_domain domain)
{
	memset(o, 0, sizeof *o);
	o->domain = domain;
	o->size = IMAGE_DEFAULT_SIZE;
	o->max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
	o->ink_threshold = 128;
	if (domain == IMAGE_PAINTING) {
		o->min_ink = 0.0;
		o->max_ink = 1.0;
		o->min_contrast = 8;
		o->png_level = 1;
	} else {
		o->min_ink = 0.002;
		o->max_ink = 0.95;
		o->sketchnorm = 1;
		o->min_contrast = 0;
		o->png_level = IMAGE_PNG_FAST;
	}
}

/* ---- small helpers ---- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* x / 255 rounded, exact for x in 0..65025 */
static inline uint8_t div255(uint32_t x)
{
	x += 128;
	return (uint8_t)((x + (x >> 8)) >> 8);
}

static inline uint8_t luma(uint8_t r, uint8_t g, uint8_t b)
{
	return (uint8_t)((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16);
}

int image_sniff(const uint8_t *data, size_t len)
{
	static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	if (data && len >= 8 && memcmp(data, png_sig, 8) == 0)
		return IMAGE_PNG;
	if (data && len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
		return IMAGE_JPEG;
	return AT_EUNSUPPORTED;
}

/* ---- pixel conversion, statistics, hashing ---- */

void image_convert(const uint8_t *src, int in_c, uint8_t *dst, int out_c, size_t npix)
{
	if (in_c == out_c && (in_c == 1 || in_c == 3)) {
		memcpy(dst, src, npix * (size_t)in_c);
		return;
	}
	for (size_t i = 0; i < npix; i++, src += in_c) {
		uint8_t r, g, b;
		switch (in_c) {
		case 1: r = g = b = src[0]; break;
		case 2: {
			uint32_t a = src[1];
			r = g = b = div255(src[0] * a + 255u * (255u - a));
			break;
		}
		case 3: r = src[0], g = src[1], b = src[2]; break;
		default: {
			uint32_t a = src[3], w = 255u * (255u - a);
			r = div255(src[0] * a + w);
			g = div255(src[1] * a + w);
			b = div255(src[2] * a + w);
			break;
		}
		}
		if (out_c == 1) {
			*dst++ = (in_c <= 2) ? r : luma(r, g, b);
		} else {
			*dst++ = r;
			*dst++ = g;
			*dst++ = b;
		}
	}
}

struct ink_stats {
	size_t ink;
	int lo, hi;
};

static void ink_scan(const uint8_t *pix, size_t npix, int channels, int threshold, struct ink_stats *st)
{
	size_t ink = 0, i = 0;
	uint8_t lo = 255, hi = 0, t = (uint8_t)(threshold < 0 ? 0 : threshold > 255 ? 255 : threshold);
	if (channels == 1) {
		/* The sketch hot path, in fixed blocks so that gcc -O2 (whose
		 * cheap vectoriser wants known trip counts) vectorises it. */
		for (; i + 64 <= npix; i += 64) {
			uint8_t n = 0, l = 255, h = 0;
			for (int k = 0; k < 64; k++) {
				uint8_t y = pix[i + k];
				n += y < t;
				l = y < l ? y : l;
				h = y > h ? y : h;
			}
			ink += n;
			lo = l < lo ? l : lo;
			hi = h > hi ? h : hi;
		}
	}
	for (; i < npix; i++) {
		uint8_t y = channels == 1 ? pix[i] : luma(pix[3 * i], pix[3 * i + 1], pix[3 * i + 2]);
		ink += y < t;
		lo = y < lo ? y : lo;
		hi = y > hi ? y : hi;
	}
	st->ink = ink;
	st->lo = lo;
	st->hi = hi;
}

double image_ink_ratio(const uint8_t *pix, int w, int h, int channels, int threshold)
{
	size_t n = (size_t)w * (size_t)h;
	if (!n)
		return 0.0;
	struct ink_stats st;
	ink_scan(pix, n, channels, threshold, &st);
	return (double)st.ink / (double)n;
}

void image_pixels_sha256(const uint8_t *pix, int w, int h, int channels, uint8_t sha[32])
{
	uint8_t hdr[12];
	put_be32(hdr, (uint32_t)w);
	put_be32(hdr + 4, (uint32_t)h);
	put_be32(hdr + 8, (uint32_t)channels);
	if (image_init() < 0)
		abort(); /* OpenSSL without SHA-256: nothing sensible to do */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 32;
	if (!ctx || !EVP_DigestInit_ex(ctx, sha256_md, NULL) || !EVP_DigestUpdate(ctx, hdr, sizeof hdr) ||
	    !EVP_DigestUpdate(ctx, pix, (size_t)w * h * channels) || !EVP_DigestFinal_ex(ctx, sha, &n))
		abort();
	EVP_MD_CTX_free(ctx);
}

const char *image_split(const uint8_t sha[32], double holdout_fraction)
{
	if (!(holdout_fraction > 0.0))
		return "train";
	if (holdout_fraction >= 1.0)
		return "holdout";
	uint64_t u = (uint64_t)be32(sha) << 32 | be32(sha + 4);
	/* u / 2^64 < f, in doubles: 53 bits of u are plenty for a split. */
	return ldexp((double)u, -64) < holdout_fraction ? "holdout" : "train";
}

/* ---- resampling ---- */

/* For each destination coordinate: the first source index and its weights. */
struct axis_weights {
	int *first;
	int *count;
	float *w; /* taps per output, stride maxtaps */
	int maxtaps;
};

static void axis_weights_free(struct axis_weights *a)
{
	free(a->first);
	free(a->count);
	free(a->w);
}

static int axis_weights_build(struct axis_weights *a, int src, int dst)
{
	double scale = (double)src / dst;
	double support = scale > 1.0 ? scale : 1.0; /* triangle half-width in source pixels */
	if (scale > IMAGE_RESIZE_MAX_FACTOR)        /* box_reduce() first: the tables must not grow with src */
		return AT_EINTERNAL;
	a->maxtaps = (int)ceil(support) * 2 + 1;
	a->first = malloc(sizeof(int) * dst);
	a->count = malloc(sizeof(int) * dst);
	a->w = calloc((size_t)dst * a->maxtaps, sizeof(float)); /* unused taps stay 0 */
	if (!a->first || !a->count || !a->w) {
		axis_weights_free(a);
		return AT_ENOMEM;
	}
	for (int o = 0; o < dst; o++) {
		double center = (o + 0.5) * scale - 0.5;
		int lo = (int)floor(center - support) + 1, hi = (int)ceil(center + support) - 1;
		if (lo < 0)
			lo = 0;
		if (hi > src - 1)
			hi = src - 1;
		if (hi < lo) /* far outside when growing: nearest edge */
			lo = hi = center < 0 ? 0 : src - 1;
		float *w = a->w + (size_t)o * a->maxtaps;
		double sum = 0;
		int n = 0;
		for (int i = lo; i <= hi && n < a->maxtaps; i++, n++) {
			double t = 1.0 - fabs(i - center) / support;
			w[n] = (float)(t > 0 ? t : 0);
			sum += w[n];
		}
		if (sum <= 0) {
			w[0] = 1.0f;
			n = 1;
			sum = 1.0;
		}
		for (int k = 0; k < n; k++)
			w[k] = (float)(w[k] / sum);
		a->first[o] = lo;
		a->count[o] = n;
	}
	return 0;
}

static inline uint8_t clamp_u8(float v)
{
	if (v <= 0.0f)
		return 0;
	if (v >= 255.0f)
		return 255;
	return (uint8_t)(v + 0.5f);
}

/* acc += w * src, in fixed blocks that gcc -O2 vectorises */
static void axpy_u8(float *restrict acc, const uint8_t *restrict src, float w, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		for (int k = 0; k < 16; k++)
			acc[i + k] += w * (float)src[i + k];
	for (; i < n; i++)
		acc[i] += w * (float)src[i];
}

/*
 * Averages fx×fy blocks (the last ones on each axis may be partial) into a
 * new image of ceil(sw/fx)×ceil(sh/fy). image_resize() calls it when the
 * shrink factor is over IMAGE_RESIZE_MAX_FACTOR: the triangle filter needs
 * 2·factor+1 taps per output, so a 40,000,000×1 row fitted into 256 pixels
 * wanted 320 MB of weights. One row of sums lives at a time.
 */
static int box_reduce(const uint8_t *src, int sw, int sh, int c, int fx, int fy, uint8_t **out, int *ow, int *oh)
{
	int nw = (sw + fx - 1) / fx, nh = (sh + fy - 1) / fy;
	uint8_t *d = malloc((size_t)nw * nh * c);
	uint64_t *acc = malloc(sizeof *acc * nw * c); /* fx·fy·255 may pass 2^32 */
	if (!d || !acc) {
		free(d);
		free(acc);
		return AT_ENOMEM;
	}
	for (int oy = 0; oy < nh; oy++) {
		int y0 = oy * fy, y1 = y0 + fy < sh ? y0 + fy : sh;
		memset(acc, 0, sizeof *acc * nw * c);
		for (int y = y0; y < y1; y++) {
			const uint8_t *r = src + (size_t)y * sw * c;
			for (int ox = 0; ox < nw; ox++) {
				int x0 = ox * fx, x1 = x0 + fx < sw ? x0 + fx : sw;
				uint64_t *a = acc + (size_t)ox * c;
				for (int x = x0; x < x1; x++)
					for (int k = 0; k < c; k++)
						a[k] += r[(size_t)x * c + k];
			}
		}
		uint8_t *dr = d + (size_t)oy * nw * c;
		for (int ox = 0; ox < nw; ox++) {
			int x0 = ox * fx, x1 = x0 + fx < sw ? x0 + fx : sw;
			uint64_t n = (uint64_t)(x1 - x0) * (uint64_t)(y1 - y0);
			for (int k = 0; k < c; k++)
				dr[(size_t)ox * c + k] = (uint8_t)((acc[(size_t)ox * c + k] + n / 2) / n);
		}
	}
	free(acc);
	*out = d;
	*ow = nw;
	*oh = nh;
	return 0;
}

/* The integer box factor that brings a shrink of src to dst under
 * IMAGE_RESIZE_MAX_FACTOR (to at most ~3/4 of it, so the triangle filter
 * still smooths over several reduced pixels); 1 when none is needed. */
static int box_factor(int src, int dst)
{
	if (src <= (int64_t)dst * IMAGE_RESIZE_MAX_FACTOR)
		return 1;
	int64_t f = src / ((int64_t)dst * (IMAGE_RESIZE_MAX_FACTOR / 2));
	return f < 2 ? 2 : (int)f;
}

/*
 * Vertical pass first, whole rows at a time (contiguous, vectorised), then
 * the horizontal pass on the already-reduced rows, taps outermost so that
 * neighbouring outputs do not wait on each other's sums. Weights past an
 * output's count are zero, so every output runs maxtaps taps; the rows carry
 * maxtaps pixels of slack for that.
 */
int image_resize(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int dw, int dh)
{
	if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || c < 1 || c > 4)
		return AT_EINVAL;
	if (sw == dw && sh == dh) {
		memcpy(dst, src, (size_t)sw * sh * c);
		return 0;
	}
	struct axis_weights ax = {0}, ay = {0};
	float *tmp = NULL, *hrow = NULL;
	uint8_t *reduced = NULL;
	int fx = box_factor(sw, dw), fy = box_factor(sh, dh), rc = 0;
	if (fx > 1 || fy > 1) {
		if ((rc = box_reduce(src, sw, sh, c, fx, fy, &reduced, &sw, &sh)) < 0)
			goto out;
		src = reduced;
		if (sw == dw && sh == dh) {
			memcpy(dst, src, (size_t)sw * sh * c);
			goto out;
		}
	}
	rc = axis_weights_build(&ax, sw, dw);
	if (rc < 0)
		goto out;
	rc = axis_weights_build(&ay, sh, dh);
	if (rc < 0)
		goto out;
	size_t srow = (size_t)sw * c, drow = (size_t)dw * c, slack = (size_t)ax.maxtaps * c;
	tmp = calloc((size_t)dh * srow + slack, sizeof(float));
	hrow = malloc(sizeof(float) * drow);
	if (!tmp || !hrow) {
		rc = AT_ENOMEM;
		goto out;
	}
	for (int y = 0; y < dh; y++) {
		const float *w = ay.w + (size_t)y * ay.maxtaps;
		for (int i = 0; i < ay.count[y]; i++)
			axpy_u8(tmp + (size_t)y * srow, src + (size_t)(ay.first[y] + i) * srow, w[i], srow);
	}
	for (int y = 0; y < dh; y++) {
		const float *t = tmp + (size_t)y * srow;
		memset(hrow, 0, sizeof(float) * drow);
		for (int i = 0; c == 1 && i < ax.maxtaps; i++) {
			const float *w = ax.w + i;
			const int *first = ax.first;
			for (int x = 0; x < dw; x++)
				hrow[x] += w[(size_t)x * ax.maxtaps] * t[first[x] + i];
		}
		for (int i = 0; c > 1 && i < ax.maxtaps; i++) {
			for (int x = 0; x < dw; x++) {
				float wv = ax.w[(size_t)x * ax.maxtaps + i];
				const float *sp = t + (size_t)(ax.first[x] + i) * c;
				for (int k = 0; k < c; k++)
					hrow[x * c + k] += wv * sp[k];
			}
		}
		uint8_t *d = dst + (size_t)y * drow;
		for (size_t x = 0; x < drow; x++)
			d[x] = clamp_u8(hrow[x]);
	}
out:
	free(tmp);
	free(hrow);
	free(reduced);
	axis_weights_free(&ax);
	axis_weights_free(&ay);
	return rc;
}

int image_fit(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int size)
{
	if (sw <= 0 || sh <= 0 || size <= 0 || c < 1 || c > 4)
		return AT_EINVAL;
	double scale = (double)size / (sw > sh ? sw : sh);
	int nw = (int)lround(sw * scale), nh = (int)lround(sh * scale);
	nw = nw < 1 ? 1 : nw > size ? size : nw;
	nh = nh < 1 ? 1 : nh > size ? size : nh;
	if (nw == size && nh == size)
		return image_resize(src, sw, sh, c, dst, size, size);
	uint8_t *tmp = malloc((size_t)nw * nh * c);
	if (!tmp)
		return AT_ENOMEM;
	int rc = image_resize(src, sw, sh, c, tmp, nw, nh);
	if (rc == 0) {
		memset(dst, 255, (size_t)size * size * c);
		int ox = (size - nw) / 2, oy = (size - nh) / 2;
		for (int y = 0; y < nh; y++)
			memcpy(dst + ((size_t)(oy + y) * size + ox) * c, tmp + (size_t)y * nw * c, (size_t)nw * c);
	}
	free(tmp);
	return rc;
}

/* ---- PNG: the fast decoder ---- */

struct ihdr {
	uint32_t w, h;
	int depth, ctype, interlace;
};

/* Signature and IHDR only: what the pixel cap needs, without decoding. */
static int ihdr_parse(const uint8_t *d, size_t len, struct ihdr *pi, char *why, size_t whylen)
{
	if (len < 8 + 8 + 13 + 4 || be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0) {
		set_why(why, whylen, "PNG without a valid IHDR chunk");
		return AT_ECORRUPT;
	}
	const uint8_t *h = d + 16;
	pi->w = be32(h);
	pi->h = be32(h + 4);
	pi->depth = h[8];
	pi->ctype = h[9];
	pi->interlace = h[12];
	if (pi->w == 0 || pi->h == 0 || pi->w > 0x7fffffffu || pi->h > 0x7fffffffu) {
		set_why(why, whylen, "PNG dimensions %ux%u are invalid", pi->w, pi->h);
		return AT_ECORRUPT;
	}
	return 0;
}

static int ctype_channels(int ctype)
{
	switch (ctype) {
	case 0: return 1;
	case 2: return 3;
	case 3: return 1;
	case 4: return 2;
	case 6: return 4;
	default: return 0;
	}
}

static void unfilter_row(uint8_t *row, const uint8_t *prev, size_t n, int bpp, int f)
{
	size_t i;
	switch (f) {
	case 1:
		if (bpp == 1) {
			/* a running sum in a register, not a store-to-load chain */
			uint8_t a = row[0];
			for (i = 1; i < n; i++)
				row[i] = a = (uint8_t)(a + row[i]);
		} else if (bpp == 4) {
			/* RGBA (browser uploads): the pixel to the left as one
			 * word, its four bytes added without carries between them */
			uint32_t a;
			memcpy(&a, row, 4);
			for (i = 4; i + 4 <= n; i += 4) {
				uint32_t x;
				memcpy(&x, row + i, 4);
				a = ((x & 0x7f7f7f7fu) + (a & 0x7f7f7f7fu)) ^ ((x ^ a) & 0x80808080u);
				memcpy(row + i, &a, 4);
			}
		} else {
			for (i = bpp; i < n; i++)
				row[i] = (uint8_t)(row[i] + row[i - bpp]);
		}
		break;
	case 2:
		/* bytewise add, 8 lanes at a time without carries between them */
		for (i = 0; i + 8 <= n; i += 8) {
			uint64_t x, y;
			memcpy(&x, row + i, 8);
			memcpy(&y, prev + i, 8);
			uint64_t r = ((x & 0x7f7f7f7f7f7f7f7full) + (y & 0x7f7f7f7f7f7f7f7full)) ^
				     ((x ^ y) & 0x8080808080808080ull);
			memcpy(row + i, &r, 8);
		}
		for (; i < n; i++)
			row[i] = (uint8_t)(row[i] + prev[i]);
		break;
	case 3:
		for (i = 0; i < (size_t)bpp; i++)
			row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
		for (; i < n; i++)
			row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
		break;
	case 4:
		for (i = 0; i < (size_t)bpp; i++)
			row[i] = (uint8_t)(row[i] + prev[i]);
		for (; i < n; i++) {
			int a = row[i - bpp], b = prev[i], c = prev[i - bpp];
			int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
			int pred = pb < pa ? b : a; /* branch-free selects; same ties as the spec */
			pred = pc < (pb < pa ? pb : pa) ? c : pred;
			row[i] = (uint8_t)(row[i] + pred);
		}
		break;
	default: break;
	}
}

/* Inflates exactly `need` bytes into out; z's input is already set. */
static int inflate_some(z_stream *z, uint8_t *out, size_t need, int *ended, char *why, size_t whylen)
{
	while (need) {
		if (*ended) {
			set_why(why, whylen, "PNG image data ends early");
			return AT_ECORRUPT;
		}
		uInt n = need > UINT_MAX ? UINT_MAX : (uInt)need;
		z->next_out = out;
		z->avail_out = n;
		int r = inflate(z, Z_NO_FLUSH);
		size_t got = n - z->avail_out;
		out += got;
		need -= got;
		if (r == Z_STREAM_END) {
			*ended = 1;
		} else if (r == Z_BUF_ERROR) { /* no progress: the input ran out */
			set_why(why, whylen, "PNG image data is truncated");
			return AT_ECORRUPT;
		} else if (r == Z_MEM_ERROR) {
			return AT_ENOMEM;
		} else if (r != Z_OK) {
			set_why(why, whylen, "PNG image data: %s", z->msg ? z->msg : "inflate failed");
			return AT_ECORRUPT;
		}
	}
	return 0;
}

/*
 * Decodes the PNG subset the fast path handles into out (out_c channels).
 * Returns FAST_PNG_FALLBACK for anything it leaves to libpng.
 */
static int fast_png_decode(const uint8_t *d, size_t len, const struct ihdr *pi, int out_c, struct image_raw *out,
			   char *why, size_t whylen)
{
	int in_c = ctype_channels(pi->ctype);
	if (pi->depth != 8 || pi->interlace != 0 || in_c == 0)
		return FAST_PNG_FALLBACK;

	const uint8_t *plte = NULL, *trns = NULL;
	size_t nplte = 0, ntrns = 0, idat_total = 0, nidat = 0;
	const uint8_t *idat1 = NULL;
	int seen_iend = 0;
	size_t pos = 8;
	while (!seen_iend) {
		if (len - pos < 12) {
			set_why(why, whylen, "PNG is truncated (no IEND chunk)");
			return AT_ECORRUPT;
		}
		uint32_t n = be32(d + pos);
		const uint8_t *type = d + pos + 4, *data = d + pos + 8;
		if (n > 0x7fffffffu || n > len - pos - 12) {
			set_why(why, whylen, "PNG is truncated in a %.4s chunk", (const char *)type);
			return AT_ECORRUPT;
		}
		if (crc32_z(0, type, 4 + (size_t)n) != be32(data + n)) {
			set_why(why, whylen, "PNG %.4s chunk has a bad CRC", (const char *)type);
			return AT_ECORRUPT;
		}
		if (!memcmp(type, "IDAT", 4)) {
			if (!idat1)
				idat1 = data;
			idat_total += n;
			nidat++;
		} else if (!memcmp(type, "PLTE", 4)) {
			plte = data;
			nplte = n / 3;
			if (n % 3 || nplte == 0 || nplte > 256) {
				set_why(why, whylen, "PNG palette has a bad length");
				return AT_ECORRUPT;
			}
		} else if (!memcmp(type, "tRNS", 4)) {
			if (pi->ctype != 3)
				return FAST_PNG_FALLBACK; /* colour-key transparency: rare, libpng does it */
			trns = data;
			ntrns = n;
		} else if (!memcmp(type, "IEND", 4)) {
			seen_iend = 1;
		} else if (!(type[0] & 0x20) && memcmp(type, "IHDR", 4) != 0) {
			return FAST_PNG_FALLBACK; /* unknown critical chunk */
		}
		pos += 12 + (size_t)n;
	}
	if (!nidat) {
		set_why(why, whylen, "PNG has no image data");
		return AT_ECORRUPT;
	}
	if (pi->ctype == 3 && !plte) {
		set_why(why, whylen, "palette PNG without PLTE");
		return AT_ECORRUPT;
	}

	int rc = 0;
	uint8_t *joined = NULL, *rows = NULL, *prev = NULL, *expand = NULL, *pix = NULL;
	z_stream z = {0};
	int z_live = 0;
	const uint8_t *zin = idat1;
	size_t zlen = idat_total;
	if (nidat > 1) {
		/* Usually one IDAT; several are joined so inflate sees one stream. */
		joined = malloc(idat_total);
		if (!joined) {
			rc = AT_ENOMEM;
			goto out;
		}
		size_t off = 0;
		for (pos = 8; off < idat_total;) {
			uint32_t n = be32(d + pos);
			if (!memcmp(d + pos + 4, "IDAT", 4)) {
				memcpy(joined + off, d + pos + 8, n);
				off += n;
			}
			pos += 12 + (size_t)n;
		}
		zin = joined;
	}

	size_t w = pi->w, h = pi->h, stride = w * in_c;
	/* Inflate ~64 KiB at a time: one call for a 256×256 sketch, bounded
	 * memory for big images. */
	size_t batch = 65536 / (stride + 1);
	if (batch < 1)
		batch = 1;
	if (batch > h)
		batch = h;
	rows = malloc((stride + 1) * (batch + 1));
	pix = malloc(w * h * out_c);
	if (pi->ctype == 3)
		expand = malloc(w * 4);
	if (!rows || !pix || (pi->ctype == 3 && !expand)) {
		rc = AT_ENOMEM;
		goto out;
	}
	prev = rows + (stride + 1) * batch; /* the last row of the previous batch */
	memset(prev, 0, stride + 1);
	uint8_t pal[256][4];
	if (pi->ctype == 3) {
		for (size_t i = 0; i < 256; i++) {
			const uint8_t *p = i < nplte ? plte + 3 * i : (const uint8_t *)"\0\0\0";
			pal[i][0] = p[0], pal[i][1] = p[1], pal[i][2] = p[2];
			pal[i][3] = i < ntrns ? trns[i] : 255;
		}
	}
	/* The zlib header is checked here and the stream inflated raw: the
	 * chunk CRCs already guard every compressed byte, and an Adler-32
	 * pass over the output costs libpng and libspng 3-38 % more CPU
	 * (bench/image). */
	if (zlen < 2 || (zin[0] & 0x0f) != 8 || (zin[0] >> 4) > 7 || (zin[0] << 8 | zin[1]) % 31 != 0 ||
	    (zin[1] & 0x20)) {
		set_why(why, whylen, "PNG image data has a bad zlib header");
		rc = AT_ECORRUPT;
		goto out;
	}
	zin += 2;
	zlen -= 2;
	if (zlen > UINT_MAX) { /* zlib counts input in uInt; no upload comes near */
		set_why(why, whylen, "PNG image data is over 4 GiB");
		rc = AT_EUNPROCESSABLE;
		goto out;
	}
	if (inflateInit2(&z, -15) != Z_OK) {
		rc = AT_ENOMEM;
		goto out;
	}
	z_live = 1;
	z.next_in = (Bytef *)zin; /* zlib does not write its input */
	z.avail_in = (uInt)zlen;
	int ended = 0;
	for (size_t y0 = 0; y0 < h; y0 += batch) {
		size_t nb = h - y0 < batch ? h - y0 : batch;
		rc = inflate_some(&z, rows, nb * (stride + 1), &ended, why, whylen);
		if (rc < 0)
			goto out;
		for (size_t k = 0; k < nb; k++) {
			uint8_t *row = rows + k * (stride + 1);
			const uint8_t *up = k ? row - stride : prev + 1;
			if (row[0] > 4) {
				set_why(why, whylen, "PNG row %zu has unknown filter %d", y0 + k, row[0]);
				rc = AT_ECORRUPT;
				goto out;
			}
			unfilter_row(row + 1, up, stride, in_c, row[0]);
			uint8_t *dst = pix + (y0 + k) * w * out_c;
			if (pi->ctype == 3) {
				for (size_t x = 0; x < w; x++) {
					if (row[1 + x] >= nplte) {
						set_why(why, whylen, "PNG palette index %d out of range", row[1 + x]);
						rc = AT_ECORRUPT;
						goto out;
					}
					memcpy(expand + 4 * x, pal[row[1 + x]], 4);
				}
				image_convert(expand, 4, dst, out_c, w);
			} else {
				image_convert(row + 1, in_c, dst, out_c, w);
			}
			/* The next row finds this one at `row - stride`; the
			 * next batch finds it in prev. */
			if (k == nb - 1)
				memcpy(prev + 1, row + 1, stride);
		}
	}
	/* All rows are in: the deflate stream must go on to its end without
	 * error (trailing data past the rows is tolerated, as libpng does). */
	if (!ended) {
		uint8_t extra[64];
		z.next_out = extra;
		z.avail_out = sizeof extra;
		int r = inflate(&z, Z_NO_FLUSH);
		if (r == Z_BUF_ERROR) {
			set_why(why, whylen, "PNG image data is truncated");
			rc = AT_ECORRUPT;
			goto out;
		}
		if (r != Z_OK && r != Z_STREAM_END) {
			set_why(why, whylen, "PNG image data: %s", z.msg ? z.msg : "inflate failed");
			rc = r == Z_MEM_ERROR ? AT_ENOMEM : AT_ECORRUPT;
			goto out;
		}
	}
	out->pix = pix;
	out->width = (int)w;
	out->height = (int)h;
	out->channels = out_c;
	pix = NULL;
out:
	if (z_live)
		inflateEnd(&z);
	free(joined);
	free(rows);
	free(expand);
	free(pix);
	return rc;
}

/* ---- PNG: libpng, for everything the fast path does not take ----
 *
 * Interlaced, 16-bit, sub-byte, colour-keyed PNGs and unknown critical
 * chunks. libpng's transforms bring every variant to 8-bit gray, gray+alpha,
 * RGB or RGBA (palette → RGB(A), 1/2/4-bit gray scaled up, tRNS → alpha,
 * 16-bit → its high byte); image_convert() does the rest, as on the fast path,
 * so the two decoders give the same pixels for the same picture. libpng
 * reports errors by longjmp: only png_lib_run() calls setjmp, and everything
 * that must be released afterwards lives in struct pngdec, not in its locals.
 */

struct pngdec {
	const uint8_t *d;
	size_t len, pos;
	png_structp png;
	png_infop info;
	uint8_t *pix; /* the result, out_c channels; owned until handed over */
	uint8_t *tmp; /* decoded rows before conversion */
	png_bytep *rows;
	int out_c;
	uint64_t max_pixels;
	uint32_t w, h;
	char msg[160];
};

static void pngdec_error(png_structp png, png_const_charp msg)
{
	struct pngdec *p = png_get_error_ptr(png);
	snprintf(p->msg, sizeof p->msg, "%s", msg ? msg : "libpng error");
	png_longjmp(png, 1);
}

/* Warnings are about ancillary chunks libpng drops (bad CRC, bad sRGB,
 * oversized text); the pixels are unaffected, and untrusted input must not
 * reach stderr. */
static void pngdec_warning(png_structp png, png_const_charp msg) {}

static void pngdec_read(png_structp png, png_bytep out, size_t n)
{
	struct pngdec *p = png_get_io_ptr(png);
	if (n > p->len - p->pos)
		png_error(png, "PNG is truncated");
	memcpy(out, p->d + p->pos, n);
	p->pos += n;
}

static int png_lib_run(struct pngdec *p, char *why, size_t whylen)
{
	if (setjmp(png_jmpbuf(p->png))) {
		set_why(why, whylen, "PNG: %s", p->msg);
		return AT_ECORRUPT;
	}
	png_set_read_fn(p->png, p, pngdec_read);
	png_read_info(p->png, p->info);
	p->w = png_get_image_width(p->png, p->info);
	p->h = png_get_image_height(p->png, p->info);
	int drc = dims_check(p->w, p->h, p->max_pixels, why, whylen); /* checked from IHDR already; libpng agrees */
	if (drc < 0)
		return drc;
	png_set_expand(p->png);
	png_set_strip_16(p->png);
	int passes = png_set_interlace_handling(p->png);
	png_read_update_info(p->png, p->info);
	int in_c = png_get_channels(p->png, p->info);
	size_t w = p->w, h = p->h, stride = w * (size_t)in_c;
	if (in_c < 1 || in_c > 4 || png_get_bit_depth(p->png, p->info) != 8 ||
	    png_get_rowbytes(p->png, p->info) != stride) {
		set_why(why, whylen, "PNG: unexpected layout after expansion (%d channels)", in_c);
		return AT_EINTERNAL;
	}
	p->pix = malloc(w * h * p->out_c);
	if (!p->pix)
		return AT_ENOMEM;
	if (passes > 1) {
		/* Interlaced: every pass revisits every row, so the whole image
		 * is held; straight into the result when no conversion is due. */
		uint8_t *img = p->pix;
		if (in_c != p->out_c) {
			img = p->tmp = malloc(stride * h);
			if (!img)
				return AT_ENOMEM;
		}
		p->rows = malloc(sizeof *p->rows * h);
		if (!p->rows)
			return AT_ENOMEM;
		for (size_t y = 0; y < h; y++)
			p->rows[y] = img + y * stride;
		png_read_image(p->png, p->rows);
		if (img != p->pix)
			image_convert(img, in_c, p->pix, p->out_c, w * h);
	} else {
		p->tmp = malloc(stride);
		if (!p->tmp)
			return AT_ENOMEM;
		for (size_t y = 0; y < h; y++) {
			png_read_row(p->png, p->tmp, NULL);
			image_convert(p->tmp, in_c, p->pix + y * w * p->out_c, p->out_c, w);
		}
	}
	/* Up to IEND: data after the rows (a truncated file, a broken chunk)
	 * is an error here as on the fast path. */
	png_read_end(p->png, NULL);
	return 0;
}

static int png_lib_decode(const uint8_t *d, size_t len, uint64_t max_pixels, int out_c, struct image_raw *out,
			  char *why, size_t whylen)
{
	struct pngdec p = {.d = d, .len = len, .out_c = out_c, .max_pixels = max_pixels};
	int rc;
	p.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &p, pngdec_error, pngdec_warning);
	if (p.png)
		p.info = png_create_info_struct(p.png);
	if (!p.png || !p.info) {
		rc = AT_ENOMEM;
		goto out;
	}
	rc = png_lib_run(&p, why, whylen);
	if (rc == 0) {
		out->pix = p.pix;
		out->width = (int)p.w;
		out->height = (int)p.h;
		out->channels = out_c;
		p.pix = NULL;
	}
out:
	if (p.png)
		png_destroy_read_struct(&p.png, p.info ? &p.info : NULL, NULL);
	free(p.rows);
	free(p.tmp);
	free(p.pix);
	return rc;
}

/* ---- JPEG: libjpeg-turbo ----
 *
 * libjpeg reports fatal errors through error_exit, which must not return: it
 * longjmps back to jpeg_dec_run()/jpeg_enc_run(), small functions whose
 * state all lives in their struct (locals are indeterminate after longjmp),
 * and the caller releases that state on every path. Warnings go through
 * emit_message; the one that means "the data ended early" (libjpeg then
 * pads with grey and carries on) is made fatal: a truncated upload is
 * AT_ECORRUPT, never a half-grey sketch. Other warnings (stray bytes before
 * a marker, bad Huffman codes that it resynchronises from) are tolerated, as
 * libvips did with fail_on=truncated.
 *
 * Decoding uses libjpeg's defaults, set explicitly: the accurate integer IDCT
 * (JDCT_ISLOW) and fancy (smooth) chroma upsampling. Pixels can differ by a
 * level or two from what libvips produced; normalised images and their
 * hashes from JPEG uploads may therefore differ from older builds. PNG
 * decoding is lossless and unchanged.
 */

/* A progressive JPEG may hold any number of scans, each a full pass over the
 * coefficients: a few KB can cost minutes of CPU. Real encoders use ~10. */
#define JPEG_MAX_SCANS 256

struct jpeg_err {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
};

static void jpeg_err_exit(j_common_ptr ci)
{
	struct jpeg_err *e = (struct jpeg_err *)ci->err;
	ci->err->format_message(ci, e->msg);
	longjmp(e->jb, 1);
}

static void jpeg_err_emit(j_common_ptr ci, int level)
{
	if (level >= 0)
		return; /* trace messages */
	if (ci->err->msg_code == JWRN_JPEG_EOF)
		jpeg_err_exit(ci); /* "Premature end of JPEG file" */
	ci->err->num_warnings++;
}

static void jpeg_err_init(struct jpeg_err *e)
{
	jpeg_std_error(&e->pub);
	e->pub.error_exit = jpeg_err_exit;
	e->pub.emit_message = jpeg_err_emit;
}

static void jpeg_progress(j_common_ptr ci)
{
	j_decompress_ptr di = (j_decompress_ptr)ci;
	if (di->input_scan_number > JPEG_MAX_SCANS) {
		struct jpeg_err *e = (struct jpeg_err *)ci->err;
		snprintf(e->msg, sizeof e->msg, "more than %d scans", JPEG_MAX_SCANS);
		longjmp(e->jb, 1);
	}
}

struct jpegdec {
	struct jpeg_decompress_struct ci;
	struct jpeg_err err;
	struct jpeg_progress_mgr prog;
	uint8_t *pix; /* the result; owned until handed over */
	uint8_t *row; /* one scanline before conversion */
	int out_c, hint_size;
	int header_only; /* image_probe(): stop after the header's checks */
	uint64_t max_pixels;
};

/* Adobe CMYK/YCCK JPEGs (Photoshop's, the usual kind) store inverted ink;
 * libjpeg hands the values over as stored. A naive conversion without ICC
 * profiles: enough to see the drawing, not colour-managed. */
static void cmyk_to_rgb(uint8_t *row, size_t n, int inverted)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t c = row[4 * i], m = row[4 * i + 1], y = row[4 * i + 2], k = row[4 * i + 3];
		if (!inverted)
			c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k;
		row[3 * i] = div255(c * k);
		row[3 * i + 1] = div255(m * k);
		row[3 * i + 2] = div255(y * k);
	}
}

static int jpeg_dec_run(struct jpegdec *j, const uint8_t *d, size_t len, char *why, size_t whylen)
{
	struct jpeg_decompress_struct *ci = &j->ci;
	if (setjmp(j->err.jb)) {
		set_why(why, whylen, "JPEG: %s", j->err.msg);
		return AT_ECORRUPT;
	}
	ci->err = &j->err.pub;
	jpeg_create_decompress(ci);
	j->prog.progress_monitor = jpeg_progress;
	ci->progress = &j->prog;
	jpeg_mem_src(ci, d, (unsigned long)len);
	jpeg_read_header(ci, TRUE);
	uint64_t w = ci->image_width, h = ci->image_height;
	int rc = dims_check(w, h, j->max_pixels, why, whylen);
	if (rc < 0 || j->header_only)
		return rc;
	int in_c, cmyk = 0;
	switch (ci->jpeg_color_space) {
	case JCS_GRAYSCALE:
		ci->out_color_space = JCS_GRAYSCALE;
		in_c = 1;
		break;
	case JCS_YCbCr:
	case JCS_RGB:
		ci->out_color_space = JCS_RGB;
		in_c = 3;
		break;
	case JCS_CMYK:
	case JCS_YCCK:
		ci->out_color_space = JCS_CMYK;
		in_c = 4;
		cmyk = 1;
		break;
	default:
		set_why(why, whylen, "JPEG with %d components in an unknown colour space", ci->num_components);
		return AT_EUNSUPPORTED;
	}
	ci->dct_method = JDCT_ISLOW;
	ci->do_fancy_upsampling = TRUE;
	if (j->hint_size > 0) {
		/* libjpeg scales by 1/2, 1/4, 1/8 inside the IDCT: big photos
		 * then cost a fraction of the time and memory. */
		uint64_t longest = w > h ? w : h;
		unsigned shrink = 1;
		while (shrink < 8 && longest / (shrink * 2) >= (uint64_t)j->hint_size)
			shrink *= 2;
		ci->scale_num = 1;
		ci->scale_denom = shrink;
	}
	jpeg_start_decompress(ci);
	size_t ow = ci->output_width, oh = ci->output_height;
	if (ci->output_components != in_c || ow == 0 || oh == 0) {
		set_why(why, whylen, "JPEG: decoder gives %d components, expected %d", ci->output_components, in_c);
		return AT_EINTERNAL;
	}
	j->pix = malloc(ow * oh * j->out_c);
	j->row = malloc(ow * in_c);
	if (!j->pix || !j->row)
		return AT_ENOMEM;
	while (ci->output_scanline < oh) {
		size_t y = ci->output_scanline;
		JSAMPROW r = j->row;
		if (jpeg_read_scanlines(ci, &r, 1) != 1) {
			set_why(why, whylen, "JPEG: no data for row %zu", y);
			return AT_ECORRUPT;
		}
		if (cmyk)
			cmyk_to_rgb(j->row, ow, ci->saw_Adobe_marker);
		image_convert(j->row, cmyk ? 3 : in_c, j->pix + y * ow * j->out_c, j->out_c, ow);
	}
	jpeg_finish_decompress(ci);
	return 0;
}

static int jpeg_decode(const uint8_t *d, size_t len, uint64_t max_pixels, int hint_size, int out_c,
		       struct image_raw *out, char *why, size_t whylen)
{
	struct jpegdec *j = calloc(1, sizeof *j);
	if (!j)
		return AT_ENOMEM;
	j->out_c = out_c;
	j->hint_size = hint_size;
	j->max_pixels = max_pixels;
	jpeg_err_init(&j->err);
	int rc = jpeg_dec_run(j, d, len, why, whylen);
	if (rc == 0) {
		out->pix = j->pix;
		out->width = (int)j->ci.output_width;
		out->height = (int)j->ci.output_height;
		out->channels = out_c;
		j->pix = NULL;
	}
	jpeg_destroy_decompress(&j->ci); /* a no-op when create itself failed: ci is zeroed */
	free(j->row);
	free(j->pix);
	free(j);
	return rc;
}

/* ---- decoding entry points ---- */

static int decode_any(const uint8_t *d, size_t len, int out_c, uint64_t max_pixels, int hint_size,
		      struct image_raw *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof *out);
	int rc = image_init();
	if (rc < 0) {
		set_why(why, whylen, "image library failed to start");
		return rc;
	}
	if (out_c != 1 && out_c != 3)
		return AT_EINVAL;
	if (!max_pixels)
		max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
	int fmt = image_sniff(d, len);
	if (fmt < 0) {
		set_why(why, whylen, "not a PNG or JPEG image");
		return AT_EUNSUPPORTED;
	}
	if (fmt == IMAGE_PNG) {
		struct ihdr pi;
		rc = ihdr_parse(d, len, &pi, why, whylen);
		if (rc < 0)
			return rc;
		if ((rc = dims_check(pi.w, pi.h, max_pixels, why, whylen)) < 0)
			return rc;
		rc = fast_png_decode(d, len, &pi, out_c, out, why, whylen);
		if (rc != FAST_PNG_FALLBACK)
			return rc;
		return png_lib_decode(d, len, max_pixels, out_c, out, why, whylen);
	}
	return jpeg_decode(d, len, max_pixels, hint_size, out_c, out, why, whylen);
}

int image_probe(const uint8_t *data, size_t len, uint64_t max_pixels, int *width, int *height, char *why, size_t whylen)
{
	uint64_t w, h;
	if (!max_pixels)
		max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
	int fmt = image_sniff(data, len);
	if (fmt < 0) {
		set_why(why, whylen, "not a PNG or JPEG image");
		return AT_EUNSUPPORTED;
	}
	if (fmt == IMAGE_PNG) {
		struct ihdr pi;
		int rc = ihdr_parse(data, len, &pi, why, whylen);
		if (rc < 0)
			return rc;
		w = pi.w;
		h = pi.h;
	} else {
		struct jpegdec *j = calloc(1, sizeof *j);
		if (!j)
			return AT_ENOMEM;
		j->header_only = 1;
		j->max_pixels = UINT64_MAX; /* checked below, with the PNG's */
		jpeg_err_init(&j->err);
		int rc = jpeg_dec_run(j, data, len, why, whylen);
		w = j->ci.image_width;
		h = j->ci.image_height;
		jpeg_destroy_decompress(&j->ci);
		free(j);
		if (rc < 0)
			return rc;
	}
	int rc = dims_check(w, h, max_pixels, why, whylen);
	if (rc < 0)
		return rc;
	if (width)
		*width = (int)w;
	if (height)
		*height = (int)h;
	return 0;
}

int image_decode(const uint8_t *data, size_t len, int channels, uint64_t max_pixels, struct image_raw *out, char *why,
		 size_t whylen)
{
	return decode_any(data, len, channels, max_pixels, 0, out, why, whylen);
}

void image_raw_free(struct image_raw *r)
{
	if (!r)
		return;
	free(r->pix);
	r->pix = NULL;
}

static int decode_fit(const uint8_t *data, size_t len, int size, int c, uint8_t **pix)
{
	*pix = NULL;
	if (size <= 0)
		return AT_EINVAL;
	struct image_raw raw;
	int rc = decode_any(data, len, c, 0, size, &raw, NULL, 0);
	if (rc < 0)
		return rc;
	if (raw.width == size && raw.height == size) {
		*pix = raw.pix;
		return 0;
	}
	uint8_t *dst = malloc((size_t)size * size * c);
	if (!dst) {
		image_raw_free(&raw);
		return AT_ENOMEM;
	}
	rc = image_fit(raw.pix, raw.width, raw.height, c, dst, size);
	image_raw_free(&raw);
	if (rc < 0) {
		free(dst);
		return rc;
	}
	*pix = dst;
	return 0;
}

int image_decode_gray(const uint8_t *data, size_t len, int size, uint8_t **pix)
{
	return decode_fit(data, len, size, 1, pix);
}

int image_decode_rgb(const uint8_t *data, size_t len, int size, uint8_t **pix)
{
	return decode_fit(data, len, size, 3, pix);
}

/* ---- PNG encoding ---- */

struct bitw {
	uint8_t *p;
	uint64_t acc;
	int n;
};

static inline void bw_put(struct bitw *b, uint32_t bits, int n)
{
	b->acc |= (uint64_t)bits << b->n;
	b->n += n;
	if (b->n >= 32) {
		b->p[0] = (uint8_t)b->acc;
		b->p[1] = (uint8_t)(b->acc >> 8);
		b->p[2] = (uint8_t)(b->acc >> 16);
		b->p[3] = (uint8_t)(b->acc >> 24);
		b->p += 4;
		b->acc >>= 32;
		b->n -= 32;
	}
}

static inline size_t match_len(const uint8_t *a, const uint8_t *b, size_t max)
{
	size_t n = 0;
	while (n + 8 <= max) {
		uint64_t x, y;
		memcpy(&x, a + n, 8);
		memcpy(&y, b + n, 8);
		if (x != y)
			return n + (size_t)(__builtin_ctzll(x ^ y) >> 3); /* little-endian */
		n += 8;
	}
	while (n < max && a[n] == b[n])
		n++;
	return n;
}

static void dist_code(size_t d, uint32_t *bits, int *nbits)
{
	int i = 29;
	while (dist_base[i] > d)
		i--;
	*bits = bit_reverse((uint32_t)i, 5) | (uint32_t)(d - dist_base[i]) << 5;
	*nbits = 5 + dist_extra[i];
}

/*
 * One fixed-Huffman deflate block, as a zlib stream. Matches are only tried
 * at distance 1 (runs) and `rowdist` (the same pixel one row up): greedy and
 * linear. out must hold n * 11 / 8 + 64 bytes. Returns the length written.
 */
static size_t zlib_fast(const uint8_t *in, size_t n, size_t rowdist, uint8_t *out)
{
	uint32_t rbits = 0;
	int rnbits = 0;
	if (rowdist > 32768)
		rowdist = 0;
	if (rowdist)
		dist_code(rowdist, &rbits, &rnbits);
	out[0] = 0x78; /* deflate, 32K window */
	out[1] = 0x01; /* fastest; (0x78 << 8 | 0x01) % 31 == 0 */
	struct bitw b = {out + 2, 0, 0};
	bw_put(&b, 1 | 1 << 1, 3); /* BFINAL, BTYPE=01 fixed Huffman */
	size_t i = 0;
	while (i < n) {
		size_t max = n - i < 258 ? n - i : 258, best = 0;
		int use_row = 0;
		if (i >= 1)
			best = match_len(in + i, in + i - 1, max);
		if (rowdist && i >= rowdist && best < max) {
			size_t l = match_len(in + i, in + i - rowdist, max);
			if (l > best + 1) /* a row match costs more bits than a run */
				best = l, use_row = 1;
		}
		if (best >= 3) {
			bw_put(&b, len_comp[best], len_compbits[best]);
			if (use_row)
				bw_put(&b, rbits, rnbits);
			else
				bw_put(&b, 0, 5); /* distance code 0 = distance 1 */
			i += best;
		} else {
			bw_put(&b, lit_bits[in[i]], lit_nbits[in[i]]);
			i++;
		}
	}
	bw_put(&b, lit_bits[256], lit_nbits[256]);
	while (b.n > 0) {
		*b.p++ = (uint8_t)b.acc;
		b.acc >>= 8;
		b.n -= 8;
	}
	put_be32(b.p, (uint32_t)adler32_z(1, in, n));
	return (size_t)(b.p + 4 - out);
}

/* zlib at `level`: deflateInit's defaults (32K window, memLevel 8), the same
 * stream GIO's GZlibCompressor wrote before. */
static int zlib_level(const uint8_t *in, size_t n, int level, uint8_t **out, size_t *outlen)
{
	if (n > UINT_MAX)
		return AT_EINVAL;
	uLongf cap = compressBound((uLong)n);
	uint8_t *buf = malloc(cap);
	if (!buf)
		return AT_ENOMEM;
	int r = compress2(buf, &cap, in, (uLong)n, level);
	if (r != Z_OK) {
		free(buf);
		return r == Z_MEM_ERROR ? AT_ENOMEM : AT_EINTERNAL;
	}
	*out = buf;
	*outlen = cap;
	return 0;
}

static uint8_t *chunk_write(uint8_t *p, const char *type, const uint8_t *data, size_t n)
{
	put_be32(p, (uint32_t)n);
	memcpy(p + 4, type, 4);
	if (n)
		memcpy(p + 8, data, n);
	put_be32(p + 8 + n, (uint32_t)crc32_z(0, p + 4, 4 + n));
	return p + 12 + n;
}

int image_encode_png(const uint8_t *pix, int w, int h, int c, int level, uint8_t **out, size_t *len)
{
	static const uint8_t ctype_of[5] = {0, 0, 4, 2, 6};
	*out = NULL;
	*len = 0;
	if (w <= 0 || h <= 0 || c < 1 || c > 4 || level < 0 || level > 9)
		return AT_EINVAL;
	int rc = image_init();
	if (rc < 0)
		return rc;
	size_t stride = (size_t)w * c, n = (stride + 1) * h;
	uint8_t *raw = malloc(n), *z = NULL, *png = NULL;
	size_t zlen = 0;
	if (!raw)
		return AT_ENOMEM;
	for (size_t y = 0; y < (size_t)h; y++) {
		uint8_t *row = raw + y * (stride + 1);
		const uint8_t *src = pix + y * stride;
		if (level == IMAGE_PNG_FAST || c < 3) {
			row[0] = 0; /* runs and row matches need no filter */
			memcpy(row + 1, src, stride);
		} else {
			/* Paeth, the filter that serves photographic colour best. */
			row[0] = 4;
			const uint8_t *up = y ? src - stride : NULL;
			for (size_t i = 0; i < stride; i++) {
				int a = i >= (size_t)c ? src[i - c] : 0, b = up ? up[i] : 0,
				    cc = (up && i >= (size_t)c) ? up[i - c] : 0;
				int p = a + b - cc, pa = abs(p - a), pb = abs(p - b), pc = abs(p - cc);
				int pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : cc;
				row[1 + i] = (uint8_t)(src[i] - pred);
			}
		}
	}
	if (level == IMAGE_PNG_FAST) {
		z = malloc(n + n * 3 / 8 + 64);
		if (!z) {
			rc = AT_ENOMEM;
			goto out;
		}
		zlen = zlib_fast(raw, n, stride + 1, z);
	} else {
		rc = zlib_level(raw, n, level, &z, &zlen);
		if (rc < 0)
			goto out;
	}
	size_t total = 8 + 25 + 12 + zlen + 12;
	png = malloc(total);
	if (!png) {
		rc = AT_ENOMEM;
		goto out;
	}
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t ihdr[13];
	put_be32(ihdr, (uint32_t)w);
	put_be32(ihdr + 4, (uint32_t)h);
	ihdr[8] = 8;
	ihdr[9] = ctype_of[c];
	ihdr[10] = ihdr[11] = ihdr[12] = 0;
	memcpy(png, sig, 8);
	uint8_t *p = chunk_write(png + 8, "IHDR", ihdr, 13);
	p = chunk_write(p, "IDAT", z, zlen);
	chunk_write(p, "IEND", NULL, 0);
	*out = png;
	*len = total;
	png = NULL;
out:
	free(raw);
	free(z);
	free(png);
	return rc;
}

/* The output grows in our own buffer rather than through jpeg_mem_dest,
 * whose buffer is not reachable for freeing after a longjmp. */
struct jpegenc {
	struct jpeg_compress_struct ci;
	struct jpeg_err err;
	struct jpeg_destination_mgr dst;
	uint8_t *buf;
	size_t cap, len;
};

static void jenc_init(j_compress_ptr ci)
{
	struct jpegenc *j = ci->client_data;
	j->cap = 16384;
	j->buf = malloc(j->cap);
	if (!j->buf)
		ERREXIT1(ci, JERR_OUT_OF_MEMORY, 0);
	j->dst.next_output_byte = j->buf;
	j->dst.free_in_buffer = j->cap;
}

static boolean jenc_grow(j_compress_ptr ci)
{
	struct jpegenc *j = ci->client_data;
	uint8_t *nb = realloc(j->buf, j->cap * 2);
	if (!nb)
		ERREXIT1(ci, JERR_OUT_OF_MEMORY, 1);
	j->buf = nb;
	j->dst.next_output_byte = nb + j->cap; /* libjpeg only calls this with the buffer full */
	j->dst.free_in_buffer = j->cap;
	j->cap *= 2;
	return TRUE;
}

static void jenc_term(j_compress_ptr ci)
{
	struct jpegenc *j = ci->client_data;
	j->len = j->cap - j->dst.free_in_buffer;
}

static int jpeg_enc_run(struct jpegenc *j, const uint8_t *rgb, int w, int h, int quality)
{
	struct jpeg_compress_struct *ci = &j->ci;
	if (setjmp(j->err.jb))
		return j->err.pub.msg_code == JERR_OUT_OF_MEMORY ? AT_ENOMEM : AT_EINTERNAL;
	ci->err = &j->err.pub;
	jpeg_create_compress(ci);
	ci->client_data = j;
	j->dst.init_destination = jenc_init;
	j->dst.empty_output_buffer = jenc_grow;
	j->dst.term_destination = jenc_term;
	ci->dest = &j->dst;
	ci->image_width = (JDIMENSION)w;
	ci->image_height = (JDIMENSION)h;
	ci->input_components = 3;
	ci->in_color_space = JCS_RGB;
	jpeg_set_defaults(ci);
	jpeg_set_quality(ci, quality, TRUE);
	/* As libvips' jpegsave did: no chroma subsampling from Q 90 up. */
	if (quality >= 90)
		ci->comp_info[0].h_samp_factor = ci->comp_info[0].v_samp_factor = 1;
	jpeg_start_compress(ci, TRUE);
	while (ci->next_scanline < ci->image_height) {
		JSAMPROW r = (JSAMPROW)(rgb + (size_t)ci->next_scanline * w * 3); /* libjpeg does not write it */
		jpeg_write_scanlines(ci, &r, 1);
	}
	jpeg_finish_compress(ci);
	return 0;
}

int image_encode_jpeg(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (w <= 0 || h <= 0 || w > JPEG_MAX_DIMENSION || h > JPEG_MAX_DIMENSION || quality < 1 || quality > 100)
		return AT_EINVAL;
	struct jpegenc *j = calloc(1, sizeof *j);
	if (!j)
		return AT_ENOMEM;
	jpeg_err_init(&j->err);
	int rc = jpeg_enc_run(j, rgb, w, h, quality);
	jpeg_destroy_compress(&j->ci);
	if (rc == 0) {
		*out = j->buf;
		*len = j->len;
		j->buf = NULL;
	}
	free(j->buf);
	free(j);
	return rc;
}

/* ---- normalisation ---- */

int image_normalize(const uint8_t *data, size_t len, const struct image_opts *opts, struct image_norm *out, char *why,
		    size_t whylen)
{
	struct image_opts def;
	if (!opts) {
		image_opts_init(&def, IMAGE_SKETCH);
		opts = &def;
	}
	memset(out, 0, sizeof *out);
	set_why(why, whylen, "%s", "");
	int c = opts->domain == IMAGE_PAINTING ? 3 : 1, size = opts->size > 0 ? opts->size : IMAGE_DEFAULT_SIZE;
	int thr = opts->ink_threshold > 0 ? opts->ink_threshold : 128;
	struct image_raw raw;
	uint8_t *canon = NULL;
	int snorm = opts->domain == IMAGE_SKETCH && opts->sketchnorm;
	/* A sketch is decoded at full size: JPEG's DCT downscaling averages a
	 * thin line away before sketchnorm could keep it. */
	int rc = decode_any(data, len, c, opts->max_pixels, snorm ? 0 : size, &raw, why, whylen);
	if (rc < 0)
		return rc;
	if (snorm) {
		/* The accepted ink range is judged on what was drawn, before the
		 * strokes are widened or thinned: an all-black page stays all-ink,
		 * whatever erosion would make of it. */
		double in_ratio = image_ink_ratio(raw.pix, raw.width, raw.height, 1, thr);
		if (!isfinite(in_ratio) || in_ratio < opts->min_ink || in_ratio > opts->max_ink) {
			out->ink_ratio = in_ratio;
			set_why(why, whylen, "ink ratio %.5f outside [%g, %g]%s", in_ratio, opts->min_ink,
				opts->max_ink, in_ratio < opts->min_ink ? " (blank)" : " (too much ink)");
			rc = AT_EUNPROCESSABLE;
			goto out;
		}
		canon = malloc((size_t)size * size);
		if (!canon) {
			rc = AT_ENOMEM;
			goto out;
		}
		struct sketchnorm_opts so;
		sketchnorm_opts_init(&so);
		so.threshold = thr;
		rc = sketchnorm_apply(raw.pix, raw.width, raw.height, size, &so, canon, NULL);
		if (rc == AT_EUNPROCESSABLE) /* no ink at all, and min_ink 0 let it through: a plain fit */
			rc = image_fit(raw.pix, raw.width, raw.height, c, canon, size);
		if (rc == AT_ERANGE) {
			set_why(why, whylen, "sketch is %dx%d; sketch normalisation takes up to %d a side", raw.width,
				raw.height, SKETCHNORM_MAX_SIDE);
			rc = AT_EUNPROCESSABLE;
		}
		if (rc < 0)
			goto out;
	} else if (raw.width == size && raw.height == size) {
		canon = raw.pix; /* the common case: already canonical, nothing to resample */
		raw.pix = NULL;
	} else {
		canon = malloc((size_t)size * size * c);
		if (!canon) {
			rc = AT_ENOMEM;
			goto out;
		}
		rc = image_fit(raw.pix, raw.width, raw.height, c, canon, size);
		if (rc < 0)
			goto out;
	}
	struct ink_stats st;
	size_t npix = (size_t)size * size;
	ink_scan(canon, npix, c, thr, &st);
	double ratio = (double)st.ink / (double)npix;
	out->ink_ratio = ratio; /* reported with a rejection too */
	if (!snorm && (!isfinite(ratio) || ratio < opts->min_ink || ratio > opts->max_ink)) {
		set_why(why, whylen, "ink ratio %.5f outside [%g, %g]%s", ratio, opts->min_ink, opts->max_ink,
			ratio < opts->min_ink ? " (blank)" : " (too much ink)");
		rc = AT_EUNPROCESSABLE;
		goto out;
	}
	if (st.hi - st.lo < opts->min_contrast) {
		set_why(why, whylen, "flat image: luma range %d..%d is under %d", st.lo, st.hi, opts->min_contrast);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}
	image_pixels_sha256(canon, size, size, c, out->sha256);
	out->phash = snorm && c == 1 ? image_dhash64(canon, size, size) : 0;
	at_hex_encode(out->sha256_hex, out->sha256, sizeof out->sha256);
	rc = image_encode_png(canon, size, size, c, opts->png_level, &out->png, &out->png_len);
	if (rc < 0)
		goto out;
	out->width = out->height = size;
	out->channels = c;
	out->ink_ratio = ratio;
out:
	image_raw_free(&raw);
	free(canon);
	if (rc < 0)
		image_norm_free(out);
	return rc;
}

void image_norm_free(struct image_norm *n)
{
	if (!n)
		return;
	free(n->png);
	n->png = NULL;
	n->png_len = 0;
}

uint64_t image_dhash64(const uint8_t *gray, int w, int h)
{
	double cell[8][9] = {{0}};
	for (int cy = 0; cy < 8; cy++)
		for (int cx = 0; cx < 9; cx++) {
			int x0 = cx * w / 9, x1 = (cx + 1) * w / 9, y0 = cy * h / 8, y1 = (cy + 1) * h / 8;
			if (x1 <= x0)
				x1 = x0 + 1;
			if (y1 <= y0)
				y1 = y0 + 1;
			uint64_t sum = 0;
			for (int y = y0; y < y1 && y < h; y++)
				for (int x = x0; x < x1 && x < w; x++)
					sum += gray[(size_t)y * w + x];
			cell[cy][cx] = (double)sum / (double)((x1 - x0) * (y1 - y0));
		}
	uint64_t bits = 0;
	for (int cy = 0; cy < 8; cy++)
		for (int cx = 0; cx < 8; cx++)
			bits = bits << 1 | (cell[cy][cx] > cell[cy][cx + 1]);
	return bits;
}
