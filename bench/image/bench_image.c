/*
 * bench_image.c — lib/image.c's PNG code against the libraries that do the
 * same jobs, on the PNGs Atelier really handles, so that every hand-written
 * part has a figure that says whether it earns its lines (docs/design.md,
 * "PNG: our code and the libraries'").
 *
 *   bench_image [N]        N timed rounds per image (default 20)
 *
 * Inputs, drawn by lib/synth and encoded before any clock runs (no data
 * committed):
 *   - sketch upload:  512x512 RGBA, black strokes on white, the drawing
 *     page's canvas (web/app.js, toBlob "image/png"); ingest decodes it to
 *     gray. The filters depend on the browser's encoder, so three variants:
 *     ours (zlib 6, Paeth on every row), libpng's adaptive filters (zlib 6)
 *     and Sub on every row (zlib 3);
 *   - stored sketch:  256x256 gray, as ingest stores it (IMAGE_PNG_FAST);
 *     prepare and the node decode it to gray;
 *   - painting:       256x256 RGB, as stored (zlib level 1, Paeth); decoded
 *     to RGB.
 *
 * Decoders bring the file to the same pixels the product wants (native 8-bit,
 * then image_convert() to gray or RGB), and each result is compared with
 * ours: a decoder that disagrees says so beside its figure.
 * libpng and libspng run three times: with the CRC and Adler-32 checks off
 * (their fastest), with the chunk CRCs checked and Adler-32 off (what our
 * decoder does, and what an upload needs: a corrupt chunk is AT_ECORRUPT),
 * and with both on (their defaults: the price of Adler-32).
 *
 * Encoders write a whole PNG (rows, deflate, chunk CRCs with zlib's crc32())
 * from the same pixels with the same filters the product uses (None for
 * sketches, Paeth for paintings), and every PNG is decoded back and compared.
 * zlib runs as the product calls it (a fresh stream each image), libdeflate
 * with one compressor kept per level (as a per-thread one would be).
 *
 * Figures: median CPU ms per image over N rounds x M images, MB/s of raw
 * pixels (decoded or encoded bytes), and the file size.
 */
#include <libdeflate.h>
#include <png.h>
#include <spng.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "image.h"
#include "synth.h"

#define M_IMAGES 16 /* distinct images per kind */
#define NKINDS 5

/* CPU time of this thread: on a shared machine, time spent descheduled is
 * not the codec's. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_image: %s\n", what);
	exit(1);
}

/* ---- the inputs ---- */

struct kind {
	const char *name;
	int w, h, file_c, out_c; /* channels in the file, channels the product decodes to */
	uint8_t *pix[M_IMAGES];  /* file_c channels */
	uint8_t *png[M_IMAGES];
	size_t len[M_IMAGES];
	uint8_t *want[M_IMAGES]; /* our decoder's output: out_c channels */
};

struct wr {
	uint8_t *p;
	size_t len, cap;
};

static void wr_fn(png_structp png, png_bytep d, size_t n)
{
	struct wr *b = png_get_io_ptr(png);
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			png_error(png, "out of memory");
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void wr_flush(png_structp png) {}

/* RGBA through libpng: browser-like encoders beside ours, whose
 * Paeth-on-every-row is the slowest filter to undo. filters: PNG_ALL_FILTERS
 * (libpng's adaptive choice per row) or one filter. */
static uint8_t *png_libpng_rgba(const uint8_t *pix, int w, int h, int filters, int level, size_t *len)
{
	png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = p ? png_create_info_struct(p) : NULL;
	struct wr b = {0};
	if (!info || setjmp(png_jmpbuf(p)))
		die("libpng writer");
	png_set_write_fn(p, &b, wr_fn, wr_flush);
	png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_set_filter(p, 0, filters);
	png_set_compression_level(p, level);
	png_write_info(p, info);
	for (int y = 0; y < h; y++)
		png_write_row(p, pix + (size_t)y * w * 4);
	png_write_end(p, NULL);
	png_destroy_write_struct(&p, &info);
	*len = b.len;
	return b.p;
}

static void kind_build(struct kind *k, int which)
{
	static const char *names[] = {"sketch upload 512x512 RGBA (ours: zlib 6, Paeth)",
				      "sketch upload 512x512 RGBA (libpng: zlib 6, adaptive filters)",
				      "sketch upload 512x512 RGBA (libpng: zlib 3, Sub)",
				      "stored sketch 256x256 gray (ours: fast)",
				      "painting 256x256 RGB (ours: zlib 1, Paeth)"};
	k->name = names[which];
	k->w = k->h = which <= 2 ? 512 : 256;
	k->file_c = which <= 2 ? 4 : which == 3 ? 1 : 3;
	k->out_c = which == 4 ? 3 : 1;
	size_t npix = (size_t)k->w * k->h;
	uint8_t *tmp = malloc(npix * 3);
	if (!tmp)
		die("out of memory");
	for (int i = 0; i < M_IMAGES; i++) {
		uint64_t seed = 1000 + (uint64_t)i;
		uint8_t *pix = malloc(npix * k->file_c);
		if (!pix)
			die("out of memory");
		int level;
		if (which == 4) {
			if (synth_painting(seed, k->w, pix, NULL) < 0)
				die("synth_painting");
			level = 1;
		} else if (which == 3) {
			if (synth_sketch(seed, k->w, pix, NULL) < 0)
				die("synth_sketch");
			level = IMAGE_PNG_FAST;
		} else {
			if (synth_sketch(seed, k->w, tmp, NULL) < 0)
				die("synth_sketch");
			for (size_t p = 0; p < npix; p++) {
				pix[4 * p] = pix[4 * p + 1] = pix[4 * p + 2] = tmp[p];
				pix[4 * p + 3] = 255; /* the page fills the canvas white */
			}
			level = 6;
		}
		k->pix[i] = pix;
		if (which == 1 || which == 2)
			k->png[i] = png_libpng_rgba(pix, k->w, k->h, which == 1 ? PNG_ALL_FILTERS : PNG_FILTER_SUB,
						    which == 1 ? 6 : 3, &k->len[i]);
		else if (image_encode_png(pix, k->w, k->h, k->file_c, level, &k->png[i], &k->len[i]) < 0)
			die("image_encode_png");
		struct image_raw raw;
		char why[256];
		if (image_decode(k->png[i], k->len[i], k->out_c, 0, &raw, why, sizeof why) < 0)
			die(why);
		k->want[i] = raw.pix;
	}
	free(tmp);
}

static void kind_free(struct kind *k)
{
	for (int i = 0; i < M_IMAGES; i++) {
		free(k->pix[i]);
		free(k->png[i]);
		free(k->want[i]);
	}
}

/* ---- decoders: each returns malloc'd out_c-channel pixels, NULL on error ---- */

enum { CHECK_NONE, CHECK_CRC, CHECK_ALL }; /* CHECK_CRC: chunk CRCs, not Adler-32 */

typedef uint8_t *(*decode_fn)(const uint8_t *png, size_t len, const struct kind *k, int checks);

static uint8_t *dec_ours(const uint8_t *png, size_t len, const struct kind *k, int checks)
{
	struct image_raw raw;
	return image_decode(png, len, k->out_c, 0, &raw, NULL, 0) < 0 ? NULL : raw.pix;
}

struct rd {
	const uint8_t *p;
	size_t len, pos;
};

static void rd_fn(png_structp png, png_bytep out, size_t n)
{
	struct rd *r = png_get_io_ptr(png);
	if (n > r->len - r->pos)
		png_error(png, "truncated");
	memcpy(out, r->p + r->pos, n);
	r->pos += n;
}

/* Rows straight into one buffer, then the same conversion as ours. The
 * volatile keeps the buffers valid across libpng's longjmp. */
static uint8_t *dec_libpng(const uint8_t *png, size_t len, const struct kind *k, int checks)
{
	png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = p ? png_create_info_struct(p) : NULL;
	uint8_t *volatile img = NULL, *volatile out = NULL;
	png_bytep *volatile rows = NULL;
	struct rd r = {png, len, 0};
	if (!info)
		goto fail;
	if (setjmp(png_jmpbuf(p)))
		goto fail;
	if (checks == CHECK_NONE)
		png_set_crc_action(p, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
	if (checks != CHECK_ALL)
		png_set_option(p, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
	png_set_read_fn(p, &r, rd_fn);
	png_read_info(p, info);
	size_t w = png_get_image_width(p, info), h = png_get_image_height(p, info);
	int c = png_get_channels(p, info);
	img = malloc(w * h * c);
	out = malloc(w * h * k->out_c);
	rows = malloc(sizeof *rows * h);
	if (!img || !out || !rows)
		goto fail;
	for (size_t y = 0; y < h; y++)
		rows[y] = img + y * w * c;
	png_read_image(p, rows);
	png_read_end(p, NULL);
	image_convert(img, c, out, k->out_c, w * h);
	png_destroy_read_struct(&p, &info, NULL);
	free(rows);
	free(img);
	return out;
fail:
	png_destroy_read_struct(&p, info ? &info : NULL, NULL);
	free(rows);
	free(img);
	free(out);
	return NULL;
}

static uint8_t *dec_spng(const uint8_t *png, size_t len, const struct kind *k, int checks)
{
	spng_ctx *ctx = spng_ctx_new(checks == CHECK_ALL ? 0 : SPNG_CTX_IGNORE_ADLER32);
	uint8_t *img = NULL, *out = NULL;
	struct spng_ihdr ih;
	size_t n;
	if (!ctx)
		return NULL;
	if (checks == CHECK_NONE && spng_set_crc_action(ctx, SPNG_CRC_USE, SPNG_CRC_USE))
		goto fail;
	if (spng_set_png_buffer(ctx, png, len) || spng_get_ihdr(ctx, &ih) ||
	    spng_decoded_image_size(ctx, SPNG_FMT_PNG, &n))
		goto fail;
	size_t npix = (size_t)ih.width * ih.height;
	int c = (int)(n / npix);
	img = malloc(n);
	out = malloc(npix * k->out_c);
	if (!img || !out || spng_decode_image(ctx, img, n, SPNG_FMT_PNG, 0))
		goto fail;
	image_convert(img, c, out, k->out_c, npix);
	spng_ctx_free(ctx);
	free(img);
	return out;
fail:
	spng_ctx_free(ctx);
	free(img);
	free(out);
	return NULL;
}

static void bench_decode(const struct kind *k, const char *name, decode_fn fn, int checks, int rounds)
{
	double *t = malloc(sizeof(double) * rounds * M_IMAGES);
	if (!t)
		die("out of memory");
	int bad = 0;
	size_t bytes = (size_t)k->w * k->h * k->file_c, total = 0;
	for (int i = 0; i < M_IMAGES; i++)
		total += k->len[i];
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < M_IMAGES; i++) {
			double t0 = now();
			uint8_t *pix = fn(k->png[i], k->len[i], k, checks);
			t[r * M_IMAGES + i] = now() - t0;
			if (!pix || memcmp(pix, k->want[i], (size_t)k->w * k->h * k->out_c) != 0)
				bad++;
			free(pix);
		}
	}
	double med = median(t, (size_t)rounds * M_IMAGES);
	printf("  decode %-34s %7.3f ms  %7.1f MB/s  file %6zu B  %s\n", name, med * 1e3, bytes / med / 1e6,
	       total / M_IMAGES, bad ? "PIXELS DIFFER" : "same pixels");
	free(t);
}

/* ---- encoders: each writes a whole PNG ---- */

typedef int (*compress_fn)(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen, int level);

static int cmp_zlib(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen, int level)
{
	uLongf l = cap;
	if (compress2(out, &l, in, n, level) != Z_OK)
		return -1;
	*outlen = l;
	return 0;
}

static int cmp_zlib_rle(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen, int level)
{
	z_stream z = {0};
	if (deflateInit2(&z, level, Z_DEFLATED, 15, 8, Z_RLE) != Z_OK)
		return -1;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	*outlen = z.total_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? 0 : -1;
}

static struct libdeflate_compressor *ldc[13];

static int cmp_libdeflate(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *outlen, int level)
{
	if (!ldc[level] && !(ldc[level] = libdeflate_alloc_compressor(level)))
		return -1;
	*outlen = libdeflate_zlib_compress(ldc[level], in, n, out, cap);
	return *outlen ? 0 : -1;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint8_t *chunk(uint8_t *p, const char *type, const uint8_t *d, size_t n)
{
	put_be32(p, (uint32_t)n);
	memcpy(p + 4, type, 4);
	memcpy(p + 8, d, n);
	put_be32(p + 8 + n, (uint32_t)crc32(0, p + 4, (uInt)(4 + n)));
	return p + 12 + n;
}

/* Rows filtered as the product does (None for 1 channel, Paeth for RGB),
 * compressed by fn, wrapped in IHDR/IDAT/IEND. */
static uint8_t *png_with(const uint8_t *pix, int w, int h, int c, compress_fn fn, int level, size_t *len)
{
	size_t stride = (size_t)w * c, n = (stride + 1) * h, cap = n + n / 8 + 1024;
	uint8_t *raw = malloc(n), *z = malloc(cap), *png = malloc(cap + 64), *p;
	size_t zlen;
	if (!raw || !z || !png)
		die("out of memory");
	for (size_t y = 0; y < (size_t)h; y++) {
		uint8_t *row = raw + y * (stride + 1);
		const uint8_t *src = pix + y * stride, *up = y ? src - stride : NULL;
		row[0] = c >= 3 ? 4 : 0;
		for (size_t i = 0; i < stride; i++) {
			int a = 0, b = 0, cc = 0;
			if (c >= 3) {
				a = i >= (size_t)c ? src[i - c] : 0, b = up ? up[i] : 0;
				cc = up && i >= (size_t)c ? up[i - c] : 0;
				int pp = a + b - cc, pa = abs(pp - a), pb = abs(pp - b), pc = abs(pp - cc);
				a = pa <= pb && pa <= pc ? a : pb <= pc ? b : cc;
			}
			row[1 + i] = (uint8_t)(src[i] - a);
		}
	}
	if (fn(raw, n, z, cap, &zlen, level) < 0)
		die("compressor failed");
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	static const uint8_t ctype_of[5] = {0, 0, 4, 2, 6};
	uint8_t ihdr[13] = {0};
	put_be32(ihdr, (uint32_t)w);
	put_be32(ihdr + 4, (uint32_t)h);
	ihdr[8] = 8;
	ihdr[9] = ctype_of[c];
	memcpy(png, sig, 8);
	p = chunk(png + 8, "IHDR", ihdr, 13);
	p = chunk(p, "IDAT", z, zlen);
	p = chunk(p, "IEND", NULL, 0);
	*len = (size_t)(p - png);
	free(raw);
	free(z);
	return png;
}

static void bench_encode(const struct kind *k, const char *name, compress_fn fn, int level, int rounds)
{
	double *t = malloc(sizeof(double) * rounds * M_IMAGES);
	if (!t)
		die("out of memory");
	int bad = 0;
	size_t bytes = (size_t)k->w * k->h * k->file_c, total = 0;
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < M_IMAGES; i++) {
			uint8_t *png;
			size_t len;
			double t0 = now();
			if (fn)
				png = png_with(k->pix[i], k->w, k->h, k->file_c, fn, level, &len);
			else if (image_encode_png(k->pix[i], k->w, k->h, k->file_c, level, &png, &len) < 0)
				die("image_encode_png");
			t[r * M_IMAGES + i] = now() - t0;
			if (r == 0) {
				struct image_raw raw;
				total += len;
				if (image_decode(png, len, k->file_c, 0, &raw, NULL, 0) < 0 ||
				    memcmp(raw.pix, k->pix[i], bytes) != 0)
					bad++;
				image_raw_free(&raw);
			}
			free(png);
		}
	}
	double med = median(t, (size_t)rounds * M_IMAGES);
	printf("  encode %-34s %7.3f ms  %7.1f MB/s  file %6zu B  %s\n", name, med * 1e3, bytes / med / 1e6,
	       total / M_IMAGES, bad ? "DOES NOT ROUND-TRIP" : "round-trips");
	free(t);
}

/* ---- checksums ----
 *
 * The byte-at-a-time CRC-32 and the 16-byte-block Adler-32 that lib/image.c
 * carried until this bench measured them (commit 73330d2), kept here as the
 * figures' reference.
 */
static uint32_t crc_table[256];

static uint32_t old_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint32_t old_adler32(const uint8_t *p, size_t n)
{
	uint32_t a = 1, b = 0;
	while (n) {
		size_t k = n < 5552 ? n : 5552;
		n -= k;
		for (; k >= 16; k -= 16, p += 16) {
			uint32_t s = 0, t = 0;
			for (int i = 0; i < 16; i++) {
				s += p[i];
				t += (uint32_t)(16 - i) * p[i];
			}
			b += 16 * a + t;
			a += s;
		}
		while (k--) {
			a += *p++;
			b += a;
		}
		a %= 65521;
		b %= 65521;
	}
	return b << 16 | a;
}

static uint32_t ck_old_crc(const uint8_t *p, size_t n) { return old_crc32(0, p, n); }
static uint32_t ck_zlib_crc(const uint8_t *p, size_t n) { return (uint32_t)crc32(0, p, (uInt)n); }
static uint32_t ck_ld_crc(const uint8_t *p, size_t n) { return libdeflate_crc32(0, p, n); }
static uint32_t ck_old_adler(const uint8_t *p, size_t n) { return old_adler32(p, n); }
static uint32_t ck_zlib_adler(const uint8_t *p, size_t n) { return (uint32_t)adler32(1, p, (uInt)n); }
static uint32_t ck_ld_adler(const uint8_t *p, size_t n) { return libdeflate_adler32(1, p, n); }

typedef uint32_t (*sum_fn)(const uint8_t *p, size_t n);

static void bench_sum(const char *name, sum_fn fn, sum_fn ref, const uint8_t *buf, size_t n, int rounds)
{
	double *t = malloc(sizeof(double) * rounds);
	if (!t)
		die("out of memory");
	volatile uint32_t sink = 0;
	for (int r = 0; r < rounds; r++) {
		double t0 = now();
		sink ^= fn(buf, n);
		t[r] = now() - t0;
	}
	double med = median(t, (size_t)rounds);
	printf("  %-41s %7.3f ms  %7.1f MB/s  %s\n", name, med * 1e3, n / med / 1e6,
	       fn(buf, n) == ref(buf, n) ? "same sum" : "SUM DIFFERS");
	free(t);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 20;
	if (rounds < 1)
		rounds = 1;
	if (image_init() < 0)
		die("image_init");
	printf("image: %d rounds x %d images per kind; median CPU ms per image, MB/s of raw pixels\n", rounds,
	       M_IMAGES);
	printf("image: zlib %s, libpng %s, libspng %s, libdeflate %s\n", zlibVersion(), png_get_libpng_ver(NULL),
	       spng_version_string(), LIBDEFLATE_VERSION_STRING);
	struct kind kinds[NKINDS];
	for (int w = 0; w < NKINDS; w++)
		kind_build(&kinds[w], w);
	for (int w = 0; w < NKINDS; w++) {
		struct kind *k = &kinds[w];
		printf("%s\n", k->name);
		bench_decode(k, "ours (CRC on, Adler off)", dec_ours, CHECK_CRC, rounds);
		bench_decode(k, "libpng (CRC off, Adler off)", dec_libpng, CHECK_NONE, rounds);
		bench_decode(k, "libpng (CRC on, Adler off)", dec_libpng, CHECK_CRC, rounds);
		bench_decode(k, "libpng (CRC on, Adler on)", dec_libpng, CHECK_ALL, rounds);
		bench_decode(k, "libspng (CRC off, Adler off)", dec_spng, CHECK_NONE, rounds);
		bench_decode(k, "libspng (CRC on, Adler off)", dec_spng, CHECK_CRC, rounds);
		bench_decode(k, "libspng (CRC on, Adler on)", dec_spng, CHECK_ALL, rounds);
		if (w <= 2)
			continue; /* uploads are decoded, never written */
		bench_encode(k, "ours (image_encode_png, fast)", NULL, IMAGE_PNG_FAST, rounds);
		bench_encode(k, "ours (image_encode_png, zlib 1)", NULL, 1, rounds);
		bench_encode(k, "zlib level 1", cmp_zlib, 1, rounds);
		bench_encode(k, "zlib Z_RLE", cmp_zlib_rle, 1, rounds);
		bench_encode(k, "libdeflate level 1", cmp_libdeflate, 1, rounds);
		bench_encode(k, "libdeflate level 6", cmp_libdeflate, 6, rounds);
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int b = 0; b < 8; b++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
	size_t n = (size_t)1 << 20;
	uint8_t *buf = malloc(n);
	if (!buf)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		buf[i] = kinds[4].pix[i / (256 * 256 * 3) % M_IMAGES][i % (256 * 256 * 3)];
	printf("checksums over 1 MiB of painting pixels\n");
	bench_sum("CRC-32 ours (byte at a time)", ck_old_crc, ck_zlib_crc, buf, n, rounds * 4);
	bench_sum("CRC-32 zlib crc32()", ck_zlib_crc, ck_zlib_crc, buf, n, rounds * 4);
	bench_sum("CRC-32 libdeflate_crc32()", ck_ld_crc, ck_zlib_crc, buf, n, rounds * 4);
	bench_sum("Adler-32 ours (16-byte blocks)", ck_old_adler, ck_zlib_adler, buf, n, rounds * 4);
	bench_sum("Adler-32 zlib adler32()", ck_zlib_adler, ck_zlib_adler, buf, n, rounds * 4);
	bench_sum("Adler-32 libdeflate_adler32()", ck_ld_adler, ck_zlib_adler, buf, n, rounds * 4);
	free(buf);
	for (int w = 0; w < NKINDS; w++)
		kind_free(&kinds[w]);
	for (int l = 0; l < 13; l++)
		libdeflate_free_compressor(ldc[l]);
	return 0;
}
