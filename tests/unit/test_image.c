/*
 * test_image.c — lib/image.c: sniffing, the fast PNG decoder and encoder
 * against libpng as the reference, the libpng and libjpeg-turbo paths (PNG
 * variants, grayscale/CMYK/truncated JPEG), normalisation rules (padding,
 * ink, pixel cap without decoding), hashing, splits, and the per-image cost.
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include <stdio.h>

#include <jpeglib.h>
#include <openssl/sha.h>
#include <png.h>
#include <zlib.h>

#include "image.h"
#include "synth.h"
#include "test.h"

/* A sketch-like image: white, a few lines and a circle, some gray. */
static uint8_t *make_sketch(int w, int h)
{
	uint8_t *p = malloc((size_t)w * h);
	memset(p, 255, (size_t)w * h);
	for (int y = 0; y < h; y++) {
		for (int x = 0; x < w; x++) {
			double dx = x - w / 2.0, dy = y - h / 2.0, r = sqrt(dx * dx + dy * dy);
			if (fabs(r - w / 4.0) < 1.5)
				p[y * w + x] = 0;
			if (abs(x - y) < 2)
				p[y * w + x] = 20;
			if (y == h / 3 && x > 10 && x < w - 10)
				p[y * w + x] = 90;
		}
	}
	return p;
}

static uint8_t *make_noise(int w, int h, int c, uint32_t seed)
{
	uint8_t *p = malloc((size_t)w * h * c);
	for (size_t i = 0; i < (size_t)w * h * c; i++) {
		seed = seed * 1664525u + 1013904223u;
		/* smooth-ish so every PNG filter gets used */
		p[i] = (uint8_t)((i % (size_t)(w * c)) + (seed >> 29));
	}
	return p;
}

/* ---- reference PNG and JPEG writers/readers (libpng, libjpeg) ---- */

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static void membuf_write(png_structp png, png_bytep d, size_t n)
{
	struct membuf *b = png_get_io_ptr(png);
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		ASSERT(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void membuf_flush(png_structp png) {}

/* libpng/libjpeg errors fail the test (leaving through the harness' longjmp). */
static void png_test_error(png_structp png, png_const_charp msg) { TEST_FAIL_("libpng: %s", msg); }

/*
 * PNG written by libpng: an encoder independent of ours. bitdepth 16 stores
 * each 8-bit v as v*257 (the same picture); bitdepth 1 packs pix (0 or 1).
 * ctype -1 picks gray/GA/RGB/RGBA from c; PNG_COLOR_TYPE_PALETTE with c == 1
 * builds a gray palette of the distinct values. trns_gray >= 0 adds a gray
 * colour key.
 */
static uint8_t *lib_png_ex(const uint8_t *pix, int w, int h, int c, size_t *len, int interlace, int bitdepth, int ctype,
			   int trns_gray)
{
	static const int ctype_of[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
					PNG_COLOR_TYPE_RGBA};
	int ct = ctype < 0 ? ctype_of[c] : ctype;
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_test_error, NULL);
	png_infop info = png_create_info_struct(png);
	ASSERT(png && info);
	struct membuf b = {0};
	png_set_write_fn(png, &b, membuf_write, membuf_flush);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bitdepth, ct,
		     interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
		     PNG_FILTER_TYPE_DEFAULT);
	png_set_filter(png, 0, PNG_ALL_FILTERS);
	uint8_t map[256];
	const uint8_t *src = pix;
	uint8_t *idx = NULL;
	if (ct == PNG_COLOR_TYPE_PALETTE) {
		png_color pal[256];
		int n = 0;
		memset(map, 0, sizeof map);
		int seen[256] = {0};
		for (size_t i = 0; i < (size_t)w * h; i++) {
			if (!seen[pix[i]]) {
				seen[pix[i]] = 1;
				map[pix[i]] = (uint8_t)n;
				pal[n].red = pal[n].green = pal[n].blue = pix[i];
				n++;
			}
		}
		png_set_PLTE(png, info, pal, n);
		idx = malloc((size_t)w * h);
		for (size_t i = 0; i < (size_t)w * h; i++)
			idx[i] = map[pix[i]];
		src = idx;
	}
	if (trns_gray >= 0) {
		png_color_16 key = {.gray = (png_uint_16)(bitdepth == 16 ? trns_gray * 257 : trns_gray)};
		png_set_tRNS(png, info, NULL, 0, &key);
	}
	png_write_info(png, info);
	if (bitdepth < 8)
		png_set_packing(png);
	size_t bpr = (size_t)w * c * (bitdepth == 16 ? 2 : 1);
	uint8_t *img = malloc(bpr * h);
	png_bytep *rows = malloc(sizeof *rows * h);
	for (size_t y = 0; y < (size_t)h; y++) {
		rows[y] = img + y * bpr;
		for (size_t i = 0; i < (size_t)w * c; i++) {
			uint8_t v = src[y * w * c + i];
			if (bitdepth == 16)
				rows[y][2 * i] = rows[y][2 * i + 1] = v; /* big-endian v*257 */
			else
				rows[y][i] = v;
		}
	}
	png_write_image(png, rows);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	free(rows);
	free(img);
	free(idx);
	*len = b.len;
	return b.p;
}

static uint8_t *lib_png(const uint8_t *pix, int w, int h, int c, size_t *len, int interlace, int bitdepth)
{
	return lib_png_ex(pix, w, h, c, len, interlace, bitdepth, -1, -1);
}

static void membuf_read(png_structp png, png_bytep out, size_t n)
{
	struct membuf *b = png_get_io_ptr(png);
	if (n > b->cap - b->len)
		png_error(png, "short");
	memcpy(out, b->p + b->len, n);
	b->len += n;
}

/* Pixels as libpng decodes them, channels as stored (8-bit PNGs). */
static uint8_t *ref_pixels(const uint8_t *data, size_t len, int *w, int *h, int *c)
{
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_test_error, NULL);
	png_infop info = png_create_info_struct(png);
	ASSERT(png && info);
	struct membuf b = {(uint8_t *)data, 0, len};
	png_set_read_fn(png, &b, membuf_read);
	png_read_info(png, info);
	png_set_expand(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);
	*w = (int)png_get_image_width(png, info);
	*h = (int)png_get_image_height(png, info);
	*c = png_get_channels(png, info);
	size_t bpr = png_get_rowbytes(png, info);
	ASSERT_EQ_INT(bpr, (size_t)*w * *c);
	uint8_t *m = malloc(bpr * *h);
	png_bytep *rows = malloc(sizeof *rows * *h);
	for (int y = 0; y < *h; y++)
		rows[y] = m + y * bpr;
	png_read_image(png, rows);
	png_read_end(png, NULL);
	png_destroy_read_struct(&png, &info, NULL);
	free(rows);
	return m;
}

static void jpeg_test_exit(j_common_ptr ci)
{
	char msg[JMSG_LENGTH_MAX];
	ci->err->format_message(ci, msg);
	TEST_FAIL_("libjpeg: %s", msg);
}

/* A JPEG from libjpeg directly: gray (c 1), RGB (c 3) or CMYK (c 4, with an
 * Adobe marker, i.e. inverted, when adobe). */
static uint8_t *lib_jpeg(const uint8_t *pix, int w, int h, int c, int adobe, size_t *len)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr err;
	ci.err = jpeg_std_error(&err);
	err.error_exit = jpeg_test_exit;
	jpeg_create_compress(&ci);
	unsigned char *buf = NULL;
	unsigned long n = 0;
	jpeg_mem_dest(&ci, &buf, &n);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = c;
	ci.in_color_space = c == 1 ? JCS_GRAYSCALE : c == 3 ? JCS_RGB : JCS_CMYK;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 95, TRUE);
	if (c == 4)
		ci.write_Adobe_marker = adobe ? TRUE : FALSE;
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW r = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * c);
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	*len = n;
	return buf;
}

TEST(init_and_sniff)
{
	ASSERT_EQ_INT(image_init(), 0);
	ASSERT_EQ_INT(image_init(), 0);
	ASSERT_EQ_INT(image_sniff((const uint8_t *)"\x89PNG\r\n\x1a\n....", 12), IMAGE_PNG);
	ASSERT_EQ_INT(image_sniff((const uint8_t *)"\xff\xd8\xff\xe0", 4), IMAGE_JPEG);
	ASSERT_EQ_INT(image_sniff((const uint8_t *)"GIF89a", 6), AT_EUNSUPPORTED);
	ASSERT_EQ_INT(image_sniff((const uint8_t *)"\x89PNG", 4), AT_EUNSUPPORTED);
	ASSERT_EQ_INT(image_sniff(NULL, 0), AT_EUNSUPPORTED);
}

TEST(fast_png_encoder_roundtrips_through_libpng)
{
	const int sizes[][2] = {{256, 256}, {1, 1}, {3, 700}, {300, 2}, {129, 77}};
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		for (int c = 1; c <= 4; c++) {
			int w = sizes[s][0], h = sizes[s][1];
			uint8_t *pix = c == 1 && w == 256 ? make_sketch(w, h) : make_noise(w, h, c, (uint32_t)s);
			for (int level = 0; level <= 9; level += 3) {
				uint8_t *png;
				size_t len;
				ASSERT_EQ_INT(image_encode_png(pix, w, h, c, level, &png, &len), 0);
				int vw, vh, vc;
				uint8_t *back = ref_pixels(png, len, &vw, &vh, &vc);
				ASSERT(back);
				ASSERT_EQ_INT(vw, w);
				ASSERT_EQ_INT(vh, h);
				ASSERT_EQ_INT(vc, c);
				ASSERT(memcmp(back, pix, (size_t)w * h * c) == 0);
				free(back);
				free(png);
			}
			free(pix);
		}
	}
}

TEST(fast_encoder_compresses_sketches)
{
	uint8_t *pix = make_sketch(256, 256), *png;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, IMAGE_PNG_FAST, &png, &len), 0);
	ASSERT_OP_INT(len, <, 8000); /* 65 KB of pixels */
	free(png);
	free(pix);
}

TEST(fast_decoder_matches_libpng_on_every_filter)
{
	for (int c = 1; c <= 4; c++) {
		int w = 97, h = 61;
		uint8_t *pix = make_noise(w, h, c, 7u + c);
		size_t len;
		uint8_t *png = lib_png(pix, w, h, c, &len, 0, 8);
		struct image_raw raw;
		int out_c = c >= 3 ? 3 : 1;
		ASSERT_EQ_INT(image_decode(png, len, out_c, 0, &raw, NULL, 0), 0);
		ASSERT_EQ_INT(raw.width, w);
		ASSERT_EQ_INT(raw.height, h);
		uint8_t *want = malloc((size_t)w * h * out_c);
		image_convert(pix, c, want, out_c, (size_t)w * h);
		ASSERT(memcmp(raw.pix, want, (size_t)w * h * out_c) == 0);
		/* and the same through the libpng path (interlaced PNGs go there) */
		free(png);
		png = lib_png(pix, w, h, c, &len, 1, 8);
		struct image_raw raw2;
		ASSERT_EQ_INT(image_decode(png, len, out_c, 0, &raw2, NULL, 0), 0);
		ASSERT(memcmp(raw2.pix, want, (size_t)w * h * out_c) == 0);
		image_raw_free(&raw);
		image_raw_free(&raw2);
		free(want);
		free(png);
		free(pix);
	}
}

/*
 * The PNG kinds the project really decodes (bench/image measures the same
 * set): sketch uploads, 512x512 RGBA, written both by our encoder (Paeth) and
 * by libpng (every filter); stored sketches (the fast encoder) and paintings
 * (zlib 1, Paeth). The fast path must give libpng's pixels on every one.
 */
TEST(fast_decoder_matches_libpng_on_synth_set)
{
	uint8_t *gray = malloc(512 * 512), *rgba = malloc(512 * 512 * 4), *rgb = malloc(256 * 256 * 3);
	ASSERT(gray && rgba && rgb);
	for (uint64_t seed = 1000; seed < 1004; seed++) {
		struct {
			uint8_t *png;
			size_t len;
			int out_c;
		} f[4];
		ASSERT_EQ_INT(synth_sketch(seed, 512, gray, NULL), 0);
		for (size_t i = 0; i < 512 * 512; i++) {
			rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = gray[i];
			rgba[4 * i + 3] = (uint8_t)(255 - (i % 7)); /* some alpha to flatten */
		}
		ASSERT_EQ_INT(image_encode_png(rgba, 512, 512, 4, 6, &f[0].png, &f[0].len), 0);
		f[0].out_c = 1;
		f[1].png = lib_png(rgba, 512, 512, 4, &f[1].len, 0, 8);
		f[1].out_c = 1;
		ASSERT_EQ_INT(synth_sketch(seed, 256, gray, NULL), 0);
		ASSERT_EQ_INT(image_encode_png(gray, 256, 256, 1, IMAGE_PNG_FAST, &f[2].png, &f[2].len), 0);
		f[2].out_c = 1;
		ASSERT_EQ_INT(synth_painting(seed, 256, rgb, NULL), 0);
		ASSERT_EQ_INT(image_encode_png(rgb, 256, 256, 3, 1, &f[3].png, &f[3].len), 0);
		f[3].out_c = 3;
		for (int k = 0; k < 4; k++) {
			int w, h, c;
			uint8_t *ref = ref_pixels(f[k].png, f[k].len, &w, &h, &c);
			uint8_t *want = malloc((size_t)w * h * f[k].out_c);
			ASSERT(want);
			image_convert(ref, c, want, f[k].out_c, (size_t)w * h);
			struct image_raw raw;
			ASSERT_EQ_INT(image_decode(f[k].png, f[k].len, f[k].out_c, 0, &raw, NULL, 0), 0);
			ASSERT_EQ_INT(raw.width, w);
			ASSERT_EQ_INT(raw.height, h);
			ASSERT(memcmp(raw.pix, want, (size_t)w * h * f[k].out_c) == 0);
			image_raw_free(&raw);
			free(want);
			free(ref);
			free(f[k].png);
		}
	}
	free(gray);
	free(rgba);
	free(rgb);
}

/* The chunk CRCs and the zlib trailer come from zlib's crc32_z()/adler32_z():
 * the IEND chunk's CRC is the spec's constant, and zlib's own uncompress()
 * (which checks Adler-32) takes the fast encoder's IDAT. */
TEST(encoder_checksums_are_zlibs)
{
	uint8_t *pix = make_sketch(256, 256), *png;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, IMAGE_PNG_FAST, &png, &len), 0);
	static const uint8_t iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
	ASSERT(memcmp(png + len - 12, iend, 12) == 0);
	ASSERT(memcmp(png + 37, "IDAT", 4) == 0);
	uLong zlen = (uLong)png[33] << 24 | (uLong)png[34] << 16 | (uLong)png[35] << 8 | png[36];
	uLongf rawlen = 257 * 256 + 1;
	uint8_t *raw = malloc(rawlen);
	ASSERT(raw);
	ASSERT_EQ_INT(uncompress(raw, &rawlen, png + 41, zlen), Z_OK);
	ASSERT_EQ_INT(rawlen, 257 * 256);
	for (int y = 0; y < 256; y++)
		ASSERT(raw[y * 257] == 0 && memcmp(raw + y * 257 + 1, pix + y * 256, 256) == 0);
	free(raw);
	free(png);
	free(pix);
}

/* Forward PNG filter f (0..4) of every row, each row led by its filter byte. */
static uint8_t *filter_rows(const uint8_t *pix, int w, int h, int c, int f)
{
	size_t stride = (size_t)w * c;
	uint8_t *rows = malloc((stride + 1) * h);
	ASSERT(rows);
	for (size_t y = 0; y < (size_t)h; y++) {
		const uint8_t *src = pix + y * stride, *up = y ? src - stride : NULL;
		uint8_t *row = rows + y * (stride + 1);
		row[0] = (uint8_t)f;
		for (size_t i = 0; i < stride; i++) {
			int a = i >= (size_t)c ? src[i - c] : 0, b = up ? up[i] : 0;
			int cc = up && i >= (size_t)c ? up[i - c] : 0, pred = 0;
			int p = a + b - cc, pa = abs(p - a), pb = abs(p - b), pc = abs(p - cc);
			switch (f) {
			case 1: pred = a; break;
			case 2: pred = b; break;
			case 3: pred = (a + b) / 2; break;
			case 4: pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : cc; break;
			}
			row[1 + i] = (uint8_t)(src[i] - pred);
		}
	}
	return rows;
}

/* Rewrites the CRC of the chunk at off (length field first) after an edit. */
static void fix_crc(uint8_t *png, size_t off)
{
	uint32_t n =
		(uint32_t)png[off] << 24 | (uint32_t)png[off + 1] << 16 | (uint32_t)png[off + 2] << 8 | png[off + 3];
	uint32_t crc = (uint32_t)crc32(0, png + off + 4, 4 + n);
	uint8_t *p = png + off + 8 + n;
	p[0] = (uint8_t)(crc >> 24), p[1] = (uint8_t)(crc >> 16), p[2] = (uint8_t)(crc >> 8), p[3] = (uint8_t)crc;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG (8-bit, c channels) whose IDAT is zlib's deflate of the given
 * filtered rows, at offset 33 like our encoder's. */
static uint8_t *png_of_rows(const uint8_t *rows, int w, int h, int c, size_t *len)
{
	static const uint8_t ctype_of[5] = {0, 0, 4, 2, 6};
	size_t n = ((size_t)w * c + 1) * h;
	uLongf zlen = compressBound(n);
	uint8_t *png = malloc(57 + zlen);
	ASSERT(png);
	ASSERT_EQ_INT(compress2(png + 41, &zlen, rows, n, 6), Z_OK);
	memcpy(png, "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
	put32(png + 16, (uint32_t)w);
	put32(png + 20, (uint32_t)h);
	png[24] = 8, png[25] = ctype_of[c], png[26] = png[27] = png[28] = 0;
	fix_crc(png, 8);
	put32(png + 33, (uint32_t)zlen);
	memcpy(png + 37, "IDAT", 4);
	fix_crc(png, 33);
	memcpy(png + 45 + zlen, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
	*len = 57 + zlen;
	return png;
}

/* Every row filter at every pixel size the fast path takes (1-4 bytes, the
 * RGBA Sub and the Up cases have word-at-a-time code of their own). */
TEST(fast_decoder_undoes_each_filter_at_each_pixel_size)
{
	for (int c = 1; c <= 4; c++) {
		int w = 67, h = 23, out_c = c >= 3 ? 3 : 1;
		uint8_t *pix = make_noise(w, h, c, 11u * c);
		uint8_t *want = malloc((size_t)w * h * out_c);
		ASSERT(want);
		image_convert(pix, c, want, out_c, (size_t)w * h);
		for (int f = 0; f <= 4; f++) {
			uint8_t *rows = filter_rows(pix, w, h, c, f), *png;
			size_t len;
			png = png_of_rows(rows, w, h, c, &len);
			struct image_raw raw;
			ASSERT_EQ_INT(image_decode(png, len, out_c, 0, &raw, NULL, 0), 0);
			if (memcmp(raw.pix, want, (size_t)w * h * out_c) != 0)
				TEST_FAIL_("filter %d, %d channels: pixels differ", f, c);
			image_raw_free(&raw);
			free(png);
			free(rows);
		}
		free(want);
		free(pix);
	}
}

/*
 * Each way a PNG can be broken gives its AT_E* code and reason, on the fast
 * path (our encoder's single IDAT at offset 33) and, interlaced, on libpng's.
 */
TEST(corrupt_png_codes)
{
	uint8_t *pix = make_sketch(64, 64), *png;
	size_t len;
	char why[256];
	struct image_raw raw;
	static const struct {
		size_t at; /* byte offset inside the IDAT data, or SIZE_MAX: the CRC */
		uint8_t xor ;
		int fix; /* recompute the CRC after the edit */
		const char *reason;
	} cases[] = {
		{SIZE_MAX, 0x01, 0, "CRC"},         /* the IDAT CRC itself */
		{0, 0x0f, 1, "zlib header"},        /* CM is no longer 8 (deflate) */
		{1, 0x20, 1, "zlib header"},        /* FDICT set */
		{2, 0x04, 1, "invalid block type"}, /* fixed-Huffman BTYPE 01 becomes the reserved 11 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ASSERT_EQ_INT(image_encode_png(pix, 64, 64, 1, IMAGE_PNG_FAST, &png, &len), 0);
		size_t zlen = (size_t)png[35] << 8 | png[36];
		if (cases[i].at == SIZE_MAX)
			png[41 + zlen] ^= cases[i].xor ;
		else
			png[41 + cases[i].at] ^= cases[i].xor ;
		if (cases[i].fix)
			fix_crc(png, 33);
		why[0] = 0;
		ASSERT_EQ_INT(image_decode(png, len, 1, 0, &raw, why, sizeof why), AT_ECORRUPT);
		ASSERT_CONTAINS(why, cases[i].reason);
		free(png);
	}
	/* An unknown row filter: rows with filter byte 5 on row 10. */
	uint8_t *rows = filter_rows(pix, 64, 64, 1, 0);
	rows[10 * 65] = 5;
	png = png_of_rows(rows, 64, 64, 1, &len);
	ASSERT_EQ_INT(image_decode(png, len, 1, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "unknown filter 5");
	free(png);
	free(rows);
	/* libpng's path (interlaced): a bad CRC and a broken stream are AT_ECORRUPT too */
	png = lib_png(pix, 64, 64, 1, &len, 1, 8);
	ASSERT(memcmp(png + 37, "IDAT", 4) == 0);
	size_t zlen = (size_t)png[35] << 8 | png[36];
	png[41 + zlen / 2] ^= 0x55;
	ASSERT_EQ_INT(image_decode(png, len, 1, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "PNG:");
	fix_crc(png, 33);
	png[41 + 2] |= 0x06; /* BTYPE 11, reserved */
	fix_crc(png, 33);
	ASSERT_EQ_INT(image_decode(png, len, 1, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "PNG:");
	free(png);
	free(pix);
}

TEST(normalize_pads_to_keep_aspect)
{
	/* 100x50 all black -> 256x128 black band centred, white above/below.
	 * The plain fit (sketchnorm off, as for photos): a sketch would be
	 * cropped to its ink, and an all-black page is rejected as all ink. */
	uint8_t pix[100 * 50];
	memset(pix, 0, sizeof pix);
	uint8_t *png;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(pix, 100, 50, 1, 6, &png, &len), 0);
	struct image_norm n;
	char why[256];
	ASSERT_EQ_INT(image_normalize(png, len, NULL, &n, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "too much ink");
	struct image_opts fo;
	image_opts_init(&fo, IMAGE_SKETCH);
	fo.sketchnorm = 0;
	ASSERT_EQ_INT(image_normalize(png, len, &fo, &n, why, sizeof why), 0);
	ASSERT_EQ_INT(n.width, 256);
	ASSERT_EQ_INT(n.height, 256);
	ASSERT_EQ_INT(n.channels, 1);
	ASSERT_OP_DBL(fabs(n.ink_ratio - 0.5), <, 1e-9);
	struct image_raw raw;
	ASSERT_EQ_INT(image_decode(n.png, n.png_len, 1, 0, &raw, NULL, 0), 0);
	ASSERT_EQ_INT(raw.width, 256);
	for (int y = 0; y < 256; y++) {
		int want = (y >= 64 && y < 192) ? 0 : 255;
		for (int x = 0; x < 256; x += 51)
			ASSERT_EQ_INT(raw.pix[y * 256 + x], want);
	}
	image_raw_free(&raw);
	image_norm_free(&n);
	free(png);
}

TEST(normalize_scales_up_small_and_tall_images)
{
	uint8_t *pix = make_sketch(64, 64), *png;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(pix, 64, 64, 1, 0, &png, &len), 0);
	struct image_norm n;
	char why[256];
	ASSERT_EQ_INT(image_normalize(png, len, NULL, &n, why, sizeof why), 0);
	ASSERT_EQ_INT(n.width, 256);
	ASSERT_OP_DBL(n.ink_ratio, >, 0.01);
	image_norm_free(&n);
	free(png);
	free(pix);
	/* tall: 40x400 black -> a 26-wide centred column (the plain fit) */
	uint8_t tall[40 * 400];
	memset(tall, 0, sizeof tall);
	ASSERT_EQ_INT(image_encode_png(tall, 40, 400, 1, 0, &png, &len), 0);
	struct image_opts fo;
	image_opts_init(&fo, IMAGE_SKETCH);
	fo.sketchnorm = 0;
	ASSERT_EQ_INT(image_normalize(png, len, &fo, &n, why, sizeof why), 0);
	struct image_raw raw;
	ASSERT_EQ_INT(image_decode(n.png, n.png_len, 1, 0, &raw, NULL, 0), 0);
	ASSERT_EQ_INT(raw.pix[128 * 256 + 0], 255);
	ASSERT_EQ_INT(raw.pix[128 * 256 + 128], 0);
	ASSERT_EQ_INT(raw.pix[0 * 256 + 128], 0);
	ASSERT_EQ_INT(raw.pix[128 * 256 + 255], 255);
	image_raw_free(&raw);
	image_norm_free(&n);
	free(png);
}

TEST(jpeg_decodes_and_normalizes)
{
	int w = 120, h = 80;
	uint8_t *rgb = malloc((size_t)w * h * 3);
	for (int i = 0; i < w * h; i++) {
		int x = i % w, y = i / w, ink = (x > 30 && x < 90 && y > 20 && y < 60);
		rgb[3 * i] = ink ? 10 : 250;
		rgb[3 * i + 1] = ink ? 20 : 250;
		rgb[3 * i + 2] = ink ? 200 : 250; /* blue ink: luma ~ 38 */
	}
	uint8_t *jpg;
	size_t len;
	ASSERT_EQ_INT(image_encode_jpeg(rgb, w, h, 90, &jpg, &len), 0);
	ASSERT_EQ_INT(image_sniff(jpg, len), IMAGE_JPEG);
	struct image_raw raw;
	char why[256];
	ASSERT_EQ_INT(image_decode(jpg, len, 3, 0, &raw, why, sizeof why), 0);
	ASSERT_EQ_INT(raw.width, w);
	ASSERT_EQ_INT(raw.height, h);
	ASSERT_OP_INT(abs(raw.pix[(40 * w + 60) * 3 + 2] - 200), <, 12);
	image_raw_free(&raw);
	struct image_norm n;
	ASSERT_EQ_INT(image_normalize(jpg, len, NULL, &n, why, sizeof why), 0);
	ASSERT_EQ_INT(n.channels, 1);
	/* a filled 59x39 box: sketchnorm crops to it (the box and margins fill
	 * the square's width) and thins it as a 39-px stroke brought to 6.4
	 * px: measured 0.15 of the square (the plain fit gave 0.16, by chance). */
	ASSERT_OP_DBL(n.ink_ratio, >, 0.10);
	ASSERT_OP_DBL(n.ink_ratio, <, 0.22);
	image_norm_free(&n);
	struct image_opts po;
	image_opts_init(&po, IMAGE_PAINTING);
	ASSERT_EQ_INT(image_normalize(jpg, len, &po, &n, why, sizeof why), 0);
	ASSERT_EQ_INT(n.channels, 3);
	ASSERT_EQ_INT(image_decode(n.png, n.png_len, 3, 0, &raw, why, sizeof why), 0);
	ASSERT_OP_INT(raw.pix[(128 * 256 + 128) * 3 + 2], >, 180);
	image_raw_free(&raw);
	image_norm_free(&n);
	uint8_t *gray;
	ASSERT_EQ_INT(image_decode_gray(jpg, len, 64, &gray), 0);
	free(gray);
	ASSERT_EQ_INT(image_decode_rgb(jpg, len, 512, &gray), 0);
	free(gray);
	free(jpg);
	free(rgb);
}

TEST(truncated_and_corrupt_are_corrupt)
{
	uint8_t *pix = make_sketch(256, 256), *png;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, 0, &png, &len), 0);
	struct image_norm n;
	char why[256];
	ASSERT_EQ_INT(image_normalize(png, len / 2, NULL, &n, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "truncated");
	ASSERT_EQ_INT(image_normalize(png, 20, NULL, &n, why, sizeof why), AT_ECORRUPT);
	ASSERT_EQ_INT(image_normalize(png, len - 12, NULL, &n, why, sizeof why), AT_ECORRUPT); /* no IEND */
	png[len / 2] ^= 0x55;                                                                  /* CRC mismatch */
	ASSERT_EQ_INT(image_normalize(png, len, NULL, &n, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "CRC");
	free(png);
	/* truncated through the libpng path (interlaced) */
	png = lib_png(pix, 256, 256, 1, &len, 1, 8);
	ASSERT_EQ_INT(image_normalize(png, len * 2 / 3, NULL, &n, why, sizeof why), AT_ECORRUPT);
	ASSERT(why[0]);
	free(png);
	/* truncated JPEG */
	uint8_t *rgb = make_noise(64, 64, 3, 1), *jpg;
	ASSERT_EQ_INT(image_encode_jpeg(rgb, 64, 64, 90, &jpg, &len), 0);
	ASSERT_EQ_INT(image_normalize(jpg, len / 2, NULL, &n, why, sizeof why), AT_ECORRUPT);
	ASSERT(why[0]);
	free(jpg);
	free(rgb);
	free(pix);
}

TEST(non_image_is_unsupported)
{
	struct image_norm n;
	char why[256];
	const char *txt = "hello, this is not an image at all";
	ASSERT_EQ_INT(image_normalize((const uint8_t *)txt, strlen(txt), NULL, &n, why, sizeof why), AT_EUNSUPPORTED);
	ASSERT_EQ_INT(image_normalize((const uint8_t *)"", 0, NULL, &n, why, sizeof why), AT_EUNSUPPORTED);
	ASSERT(n.png == NULL);
}

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

TEST(decompression_bomb_rejected_from_header)
{
	/* A PNG that claims 10000x10000 in IHDR; nothing after it is valid. */
	uint8_t png[8 + 25 + 64];
	memcpy(png, "\x89PNG\r\n\x1a\n", 8);
	memcpy(png + 8, "\0\0\0\x0dIHDR", 8);
	uint8_t *h = png + 16;
	h[0] = 0, h[1] = 0, h[2] = 0x27, h[3] = 0x10; /* 10000 */
	memcpy(h + 4, h, 4);
	h[8] = 8, h[9] = 0, h[10] = h[11] = h[12] = 0;
	memset(png + 29, 0xab, sizeof png - 29);
	struct image_norm n;
	char why[256];
	double t0 = cpu_now();
	ASSERT_EQ_INT(image_normalize(png, sizeof png, NULL, &n, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_OP_DBL(cpu_now() - t0, <, 0.05);
	ASSERT_CONTAINS(why, "10000x10000");
	struct image_raw raw;
	ASSERT_EQ_INT(image_decode(png, sizeof png, 1, 1000, &raw, why, sizeof why), AT_EUNPROCESSABLE);

	/* The same through JPEG: a small JPEG whose SOF claims 10000x10000. */
	uint8_t *rgb = make_noise(16, 16, 3, 3), *jpg;
	size_t len;
	ASSERT_EQ_INT(image_encode_jpeg(rgb, 16, 16, 80, &jpg, &len), 0);
	int patched = 0;
	for (size_t i = 2; i + 9 < len; i++) {
		if (jpg[i] == 0xff && (jpg[i + 1] == 0xc0 || jpg[i + 1] == 0xc2)) {
			jpg[i + 5] = 0x27, jpg[i + 6] = 0x10, jpg[i + 7] = 0x27, jpg[i + 8] = 0x10;
			patched = 1;
			break;
		}
	}
	ASSERT(patched);
	t0 = cpu_now();
	ASSERT_EQ_INT(image_normalize(jpg, len, NULL, &n, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_OP_DBL(cpu_now() - t0, <, 0.05);
	free(jpg);
	free(rgb);
}

/* Signature and an IHDR claiming w×h (8-bit gray); the rest is junk: the
 * caps must be decided before it is read. */
static void header_png(uint8_t png[8 + 25 + 64], uint32_t w, uint32_t h)
{
	memcpy(png, "\x89PNG\r\n\x1a\n", 8);
	memcpy(png + 8, "\0\0\0\x0dIHDR", 8);
	uint8_t *p = png + 16;
	for (int i = 0; i < 4; i++) {
		p[i] = (uint8_t)(w >> (24 - 8 * i));
		p[4 + i] = (uint8_t)(h >> (24 - 8 * i));
	}
	p[8] = 8, p[9] = 0, p[10] = p[11] = p[12] = 0;
	memset(png + 29, 0xab, 64);
}

/*
 * Each side is capped from the header, whatever the pixel count: a
 * 40,000,000x1 PNG is 39 KB on the wire and under the 40 MP cap, and took
 * atelierd from 72 MB to 520 MB. Every entry point answers the same code,
 * which maps to 422.
 */
TEST(each_side_capped_from_the_header)
{
	static const struct {
		uint32_t w, h;
		const char *side;
	} cases[] = {{40000000, 1, "width (40000000)"},
		     {1, 40000000, "height (40000000)"},
		     {8193, 1, "width (8193)"},
		     {8, 8193, "height (8193)"}};
	uint8_t png[8 + 25 + 64];
	char why[256];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		header_png(png, cases[i].w, cases[i].h);
		struct image_norm n;
		struct image_raw raw;
		struct image_opts o;
		int w = -1, h = -1;
		double t0 = cpu_now();
		int rc = image_normalize(png, sizeof png, NULL, &n, why, sizeof why);
		ASSERT_EQ_INT(rc, AT_EUNPROCESSABLE);
		ASSERT_EQ_INT(at_err_http_status(rc), 422);
		ASSERT_CONTAINS(why, cases[i].side);
		ASSERT_CONTAINS(why, "over the cap of 8192 pixels a side");
		image_opts_init(&o, IMAGE_PAINTING);
		ASSERT_EQ_INT(image_normalize(png, sizeof png, &o, &n, why, sizeof why), AT_EUNPROCESSABLE);
		ASSERT_EQ_INT(image_decode(png, sizeof png, 3, 0, &raw, why, sizeof why), AT_EUNPROCESSABLE);
		ASSERT_EQ_INT(image_probe(png, sizeof png, 0, &w, &h, why, sizeof why), AT_EUNPROCESSABLE);
		ASSERT_CONTAINS(why, cases[i].side);
		ASSERT_EQ_INT(w, -1);
		ASSERT_OP_DBL(cpu_now() - t0, <, 0.05);
	}
	/* the pixel cap still speaks first when both are passed */
	header_png(png, 100000, 100000);
	ASSERT_EQ_INT(image_probe(png, sizeof png, 0, NULL, NULL, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "more than 40000000 pixels");

	/* 8192x8 is the widest accepted: a real sketch, normalised */
	uint8_t *pix = malloc(8192 * 8), *enc;
	size_t len;
	ASSERT(pix != NULL);
	for (int y = 0; y < 8; y++)
		for (int x = 0; x < 8192; x++)
			pix[y * 8192 + x] = x % 64 < 8 ? 0 : 255;
	ASSERT_EQ_INT(image_encode_png(pix, 8192, 8, 1, 0, &enc, &len), 0);
	int w = 0, h = 0;
	ASSERT_EQ_INT(image_probe(enc, len, 0, &w, &h, why, sizeof why), 0);
	ASSERT_EQ_INT(w, 8192);
	ASSERT_EQ_INT(h, 8);
	struct image_norm n;
	int rc = image_normalize(enc, len, NULL, &n, why, sizeof why);
	if (rc != 0)
		TEST_FAIL_("8192x8: %s (%s)", at_strerror(rc), why);
	ASSERT_EQ_INT(n.width, 256);
	image_norm_free(&n);
	free(enc);
	free(pix);

	/* JPEG: a SOF claiming 8193x1, through the header only */
	uint8_t *rgb = make_noise(16, 16, 3, 5), *jpg;
	ASSERT_EQ_INT(image_encode_jpeg(rgb, 16, 16, 80, &jpg, &len), 0);
	ASSERT_EQ_INT(image_probe(jpg, len, 0, &w, &h, why, sizeof why), 0);
	ASSERT_EQ_INT(w, 16);
	int patched = 0;
	for (size_t i = 2; i + 9 < len && !patched; i++) {
		if (jpg[i] == 0xff && (jpg[i + 1] == 0xc0 || jpg[i + 1] == 0xc2)) {
			jpg[i + 5] = 0x00, jpg[i + 6] = 0x01, jpg[i + 7] = 0x20, jpg[i + 8] = 0x01; /* h 1, w 8193 */
			patched = 1;
		}
	}
	ASSERT(patched);
	ASSERT_EQ_INT(image_probe(jpg, len, 0, &w, &h, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "width (8193)");
	struct image_raw raw;
	ASSERT_EQ_INT(image_decode(jpg, len, 1, 0, &raw, why, sizeof why), AT_EUNPROCESSABLE);
	free(jpg);
	free(rgb);
}

/* Peak resident memory (VmHWM), kB; the peak is reset first when reset. */
static long vm_hwm_kb(int reset)
{
	if (reset) {
		FILE *c = fopen("/proc/self/clear_refs", "w");
		if (c) {
			fputs("5", c); /* 5: reset the peak RSS */
			fclose(c);
		}
	}
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/*
 * The resampler's tables depend on the output and a bounded support, not on
 * the input's long side: fitting a 40,000,000x1 row into 256 pixels wanted
 * 320 MB of triangle weights and a 160 MB float row. A box average first
 * keeps the peak near the input's own bytes.
 */
TEST(resize_memory_is_bounded_by_the_output)
{
	size_t sw = 40000000;
	uint8_t *src = malloc(sw), dst[256];
	ASSERT(src != NULL);
	for (size_t x = 0; x < sw; x++)
		src[x] = x < sw / 2 ? 0 : 255;
	long before = vm_hwm_kb(1);
	ASSERT_EQ_INT(image_resize(src, (int)sw, 1, 1, dst, 256, 1), 0);
	long grew = vm_hwm_kb(0) - before;
	fprintf(stderr, "  40000000x1 -> 256x1: peak grew %ld kB\n", grew);
	ASSERT_OP_INT(grew, <, 16 * 1024);
	ASSERT_EQ_INT(dst[0], 0);
	ASSERT_EQ_INT(dst[100], 0);
	ASSERT_EQ_INT(dst[155], 255);
	ASSERT_EQ_INT(dst[255], 255);
	ASSERT_OP_INT(dst[127], <=, dst[128]);
	/* a big shrink keeps the mean: 1/8 of the columns black */
	for (size_t x = 0; x < sw; x++)
		src[x] = x % 64 < 8 ? 0 : 255;
	ASSERT_EQ_INT(image_resize(src, 65536, 16, 1, dst, 16, 16), 0);
	for (int i = 0; i < 256; i++)
		ASSERT_OP_INT(abs((int)dst[i] - 223), <=, 1);
	free(src);
}

TEST(blank_and_all_ink_rejected_with_ratio)
{
	uint8_t pix[256 * 256], *png;
	size_t len;
	struct image_norm n;
	char why[256];
	memset(pix, 255, sizeof pix);
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, 0, &png, &len), 0);
	ASSERT_EQ_INT(image_normalize(png, len, NULL, &n, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "ink ratio 0.00000");
	ASSERT_CONTAINS(why, "blank");
	free(png);
	memset(pix, 0, sizeof pix);
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, 0, &png, &len), 0);
	ASSERT_EQ_INT(image_normalize(png, len, NULL, &n, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "ink ratio 1.00000");
	free(png);
	/* a flat painting is rejected by contrast, a dark one is fine */
	struct image_opts po;
	image_opts_init(&po, IMAGE_PAINTING);
	uint8_t rgb[64 * 64 * 3];
	memset(rgb, 40, sizeof rgb);
	ASSERT_EQ_INT(image_encode_png(rgb, 64, 64, 3, 1, &png, &len), 0);
	ASSERT_EQ_INT(image_normalize(png, len, &po, &n, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "flat");
	free(png);
	for (size_t i = 0; i < sizeof rgb; i++)
		rgb[i] = (uint8_t)(i % 61);
	ASSERT_EQ_INT(image_encode_png(rgb, 64, 64, 3, 1, &png, &len), 0);
	ASSERT_EQ_INT(image_normalize(png, len, &po, &n, why, sizeof why), 0);
	ASSERT_OP_DBL(n.ink_ratio, >, 0.9);
	image_norm_free(&n);
	free(png);
}

TEST(alpha_flattens_onto_white)
{
	/* RGBA: transparent everywhere except an opaque black square */
	int w = 256;
	uint8_t *rgba = calloc((size_t)w * w, 4), *png;
	for (int y = 100; y < 150; y++)
		for (int x = 100; x < 150; x++)
			rgba[(y * w + x) * 4 + 3] = 255;
	size_t len;
	ASSERT_EQ_INT(image_encode_png(rgba, w, w, 4, 6, &png, &len), 0);
	struct image_norm n;
	char why[256];
	struct image_opts fo; /* the plain fit keeps the geometry exact */
	image_opts_init(&fo, IMAGE_SKETCH);
	fo.sketchnorm = 0;
	ASSERT_EQ_INT(image_normalize(png, len, &fo, &n, why, sizeof why), 0);
	ASSERT_OP_DBL(fabs(n.ink_ratio - 2500.0 / 65536), <, 1e-9);
	image_norm_free(&n);
	free(png);
	free(rgba);
}

TEST(same_pixels_same_hash)
{
	uint8_t *pix = make_sketch(256, 256), *a, *b, *c;
	size_t la, lb, lc;
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, IMAGE_PNG_FAST, &a, &la), 0);
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, 9, &b, &lb), 0);
	c = lib_png(pix, 256, 256, 1, &lc, 1, 8); /* interlaced: the libpng path */
	ASSERT(la != lb || memcmp(a, b, la) != 0);
	struct image_norm na, nb, nc;
	char why[256];
	ASSERT_EQ_INT(image_normalize(a, la, NULL, &na, why, sizeof why), 0);
	ASSERT_EQ_INT(image_normalize(b, lb, NULL, &nb, why, sizeof why), 0);
	ASSERT_EQ_INT(image_normalize(c, lc, NULL, &nc, why, sizeof why), 0);
	ASSERT_STREQ(na.sha256_hex, nb.sha256_hex);
	ASSERT_STREQ(na.sha256_hex, nc.sha256_hex);
	ASSERT_EQ_INT(strlen(na.sha256_hex), 64);
	/* the stored PNG is itself canonical: normalising it again is a no-op
	 * (sketchnorm passes an already-normalised square through) */
	struct image_norm again;
	ASSERT_EQ_INT(image_normalize(na.png, na.png_len, NULL, &again, why, sizeof why), 0);
	ASSERT_STREQ(again.sha256_hex, na.sha256_hex);
	ASSERT_EQ_INT(again.png_len, na.png_len);
	/* and the hash is over (dims, channels, pixels) of what is stored */
	uint8_t want[32];
	struct image_raw st;
	ASSERT_EQ_INT(image_decode(na.png, na.png_len, 1, 0, &st, NULL, 0), 0);
	image_pixels_sha256(st.pix, 256, 256, 1, want);
	ASSERT(memcmp(want, na.sha256, 32) == 0);
	st.pix[5] ^= 1;
	image_pixels_sha256(st.pix, 256, 256, 1, want);
	ASSERT(memcmp(want, na.sha256, 32) != 0);
	image_raw_free(&st);
	image_norm_free(&na);
	image_norm_free(&nb);
	image_norm_free(&nc);
	image_norm_free(&again);
	free(a);
	free(b);
	free(c);
	free(pix);
}

TEST(sixteen_bit_and_palette_pngs)
{
	uint8_t *pix = make_sketch(256, 256);
	size_t len;
	/* 16-bit gray holding v*257 for each 8-bit v: the same picture */
	uint8_t *png16 = lib_png(pix, 256, 256, 1, &len, 0, 16);
	ASSERT_EQ_INT(png16[24], 16); /* IHDR bit depth */
	struct image_norm n8, n16;
	char why[256];
	ASSERT_EQ_INT(image_normalize(png16, len, NULL, &n16, why, sizeof why), 0);
	uint8_t *png8;
	ASSERT_EQ_INT(image_encode_png(pix, 256, 256, 1, 0, &png8, &len), 0);
	ASSERT_EQ_INT(image_normalize(png8, len, NULL, &n8, why, sizeof why), 0);
	ASSERT_STREQ(n8.sha256_hex, n16.sha256_hex);
	image_norm_free(&n8);
	image_norm_free(&n16);
	free(png16);
	free(png8);
	/* palette PNG decodes on the fast path, and interlaced through libpng */
	for (int il = 0; il <= 1; il++) {
		uint8_t *buf = lib_png_ex(pix, 256, 256, 1, &len, il, 8, PNG_COLOR_TYPE_PALETTE, -1);
		ASSERT_EQ_INT(buf[25], 3); /* IHDR colour type */
		struct image_raw raw;
		ASSERT_EQ_INT(image_decode(buf, len, 1, 0, &raw, why, sizeof why), 0);
		ASSERT(memcmp(raw.pix, pix, 256 * 256) == 0);
		image_raw_free(&raw);
		free(buf);
	}
	free(pix);
}

TEST(sub_byte_and_colour_key_pngs_through_libpng)
{
	/* 1-bit gray: 0/1 samples read back as 0/255 */
	int w = 77, h = 33;
	uint8_t *bits = malloc((size_t)w * h), *want = malloc((size_t)w * h);
	for (int i = 0; i < w * h; i++) {
		bits[i] = (uint8_t)((i / 3 + i / w) & 1);
		want[i] = bits[i] ? 255 : 0;
	}
	size_t len;
	uint8_t *png = lib_png(bits, w, h, 1, &len, 0, 1);
	ASSERT_EQ_INT(png[24], 1);
	struct image_raw raw;
	char why[256];
	ASSERT_EQ_INT(image_decode(png, len, 1, 0, &raw, why, sizeof why), 0);
	ASSERT_EQ_INT(raw.width, w);
	ASSERT(memcmp(raw.pix, want, (size_t)w * h) == 0);
	image_raw_free(&raw);
	free(png);
	/* the same, 16-bit gray with a colour key: keyed pixels (0) become
	 * transparent and flatten onto white, as gray+alpha would */
	png = lib_png_ex(want, w, h, 1, &len, 1, 16, -1, 0);
	ASSERT_EQ_INT(image_decode(png, len, 3, 0, &raw, why, sizeof why), 0);
	for (int i = 0; i < w * h; i++)
		ASSERT_EQ_INT(raw.pix[3 * i], 255);
	image_raw_free(&raw);
	free(png);
	/* a bad CRC in IDAT on the libpng path is corrupt, with libpng's reason */
	png = lib_png(want, w, h, 1, &len, 1, 8);
	png[len - 20] ^= 0x40;
	ASSERT_EQ_INT(image_decode(png, len, 1, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "PNG");
	free(png);
	free(bits);
	free(want);
}

TEST(jpeg_gray_and_cmyk)
{
	int w = 64, h = 48;
	uint8_t *g = malloc((size_t)w * h), *cmyk = malloc((size_t)w * h * 4);
	for (int i = 0; i < w * h; i++) {
		int ink = (i % w) >= 16 && (i % w) < 48;
		g[i] = ink ? 30 : 230;
		/* cyan ink on paper: plain CMYK (0 = no ink) */
		cmyk[4 * i] = ink ? 255 : 0;
		cmyk[4 * i + 1] = cmyk[4 * i + 2] = cmyk[4 * i + 3] = 0;
	}
	size_t len;
	uint8_t *jpg = lib_jpeg(g, w, h, 1, 0, &len);
	struct image_raw raw;
	char why[256];
	ASSERT_EQ_INT(image_decode(jpg, len, 3, 0, &raw, why, sizeof why), 0);
	ASSERT_EQ_INT(raw.channels, 3);
	ASSERT_OP_INT(abs(raw.pix[(24 * w + 32) * 3] - 30), <, 6);
	ASSERT_OP_INT(abs(raw.pix[(24 * w + 2) * 3 + 2] - 230), <, 6);
	image_raw_free(&raw);
	free(jpg);
	for (int adobe = 0; adobe <= 1; adobe++) {
		uint8_t *src = cmyk;
		uint8_t *inv = NULL;
		if (adobe) { /* Adobe's CMYK is stored inverted (255 = no ink) */
			inv = malloc((size_t)w * h * 4);
			for (int i = 0; i < w * h * 4; i++)
				inv[i] = (uint8_t)(255 - cmyk[i]);
			src = inv;
		}
		jpg = lib_jpeg(src, w, h, 4, adobe, &len);
		ASSERT_EQ_INT(image_decode(jpg, len, 3, 0, &raw, why, sizeof why), 0);
		const uint8_t *ink = raw.pix + (24 * w + 32) * 3, *paper = raw.pix + (24 * w + 2) * 3;
		ASSERT_OP_INT(ink[0], <, 20); /* cyan: no red, full green and blue */
		ASSERT_OP_INT(ink[1], >, 235);
		ASSERT_OP_INT(ink[2], >, 235);
		ASSERT_OP_INT(paper[0], >, 235);
		image_raw_free(&raw);
		free(jpg);
		free(inv);
	}
	free(g);
	free(cmyk);
}

TEST(jpeg_corrupt_with_reasons)
{
	uint8_t *rgb = make_noise(64, 64, 3, 5), *jpg;
	size_t len;
	ASSERT_EQ_INT(image_encode_jpeg(rgb, 64, 64, 90, &jpg, &len), 0);
	struct image_raw raw;
	char why[256];
	/* cut in the entropy-coded data: libjpeg's "premature end" warning is an error here */
	ASSERT_EQ_INT(image_decode(jpg, len - 40, 3, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "JPEG");
	ASSERT_CONTAINS(why, "Premature end");
	/* cut in the headers */
	ASSERT_EQ_INT(image_decode(jpg, 40, 3, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT(why[0]);
	/* garbage after SOI */
	uint8_t junk[64];
	memset(junk, 0x5a, sizeof junk);
	junk[0] = 0xff, junk[1] = 0xd8, junk[2] = 0xff;
	ASSERT_EQ_INT(image_decode(junk, sizeof junk, 1, 0, &raw, why, sizeof why), AT_ECORRUPT);
	ASSERT_CONTAINS(why, "JPEG");
	/* a big JPEG decodes scaled down when only a small result is wanted */
	uint8_t *big = make_noise(1024, 768, 3, 9), *bj, *small;
	ASSERT_EQ_INT(image_encode_jpeg(big, 1024, 768, 80, &bj, &len), 0);
	ASSERT_EQ_INT(image_decode_rgb(bj, len, 128, &small), 0);
	free(small);
	ASSERT_EQ_INT(image_decode(bj, len, 1, 1024 * 768 - 1, &raw, why, sizeof why), AT_EUNPROCESSABLE);
	free(bj);
	free(big);
	free(jpg);
	free(rgb);
}

/* lib/image.c must not pull libvips (nor GIO/GLib, which only it needed)
 * into the processes that only decode uploads (atelierd): this test program
 * links only image.c's dependencies. */
TEST(libvips_is_not_loaded)
{
	FILE *f = fopen("/proc/self/maps", "r");
	ASSERT(f);
	char line[512];
	int vips = 0, gio = 0;
	while (fgets(line, sizeof line, f)) {
		vips += strstr(line, "libvips") != NULL;
		gio += strstr(line, "libgio-") != NULL || strstr(line, "libglib-") != NULL;
	}
	fclose(f);
	ASSERT_EQ_INT(vips, 0);
	ASSERT_EQ_INT(gio, 0);
}

TEST(split_is_deterministic_and_near_fraction)
{
	int holdout = 0, N = 20000;
	for (int i = 0; i < N; i++) {
		uint8_t sha[32];
		SHA256((const uint8_t *)&i, sizeof i, sha);
		const char *s = image_split(sha, 0.1);
		ASSERT_STREQ(s, image_split(sha, 0.1));
		holdout += strcmp(s, "holdout") == 0;
		ASSERT_STREQ(image_split(sha, 0.0), "train");
		ASSERT_STREQ(image_split(sha, 1.0), "holdout");
		if (!strcmp(s, "holdout")) /* monotone in the fraction */
			ASSERT_STREQ(image_split(sha, 0.2), "holdout");
	}
	ASSERT_OP_DBL(fabs(holdout / (double)N - 0.1), <, 0.01);
}

TEST(resize_and_fit)
{
	uint8_t src[4 * 4], dst[8 * 8], small[2 * 2];
	memset(src, 100, sizeof src);
	ASSERT_EQ_INT(image_resize(src, 4, 4, 1, dst, 8, 8), 0);
	for (int i = 0; i < 64; i++)
		ASSERT_EQ_INT(dst[i], 100);
	ASSERT_EQ_INT(image_resize(src, 4, 4, 1, small, 2, 2), 0);
	ASSERT_EQ_INT(small[3], 100);
	ASSERT_EQ_INT(image_resize(src, 0, 4, 1, small, 2, 2), AT_EINVAL);
	/* 1000x10 -> fits 100 wide, 1 high, centred */
	uint8_t *wide = malloc(1000 * 10), fit[100 * 100];
	memset(wide, 0, 1000 * 10);
	ASSERT_EQ_INT(image_fit(wide, 1000, 10, 1, fit, 100), 0);
	ASSERT_EQ_INT(fit[49 * 100 + 50], 0);
	ASSERT_EQ_INT(fit[10 * 100 + 50], 255);
	free(wide);
}

/* Since sketches go through sketchnorm (two distance transforms on a 256-px
 * grid) an optimised build takes about 2 ms per sketch on a loaded 2-core
 * machine, and ASan+UBSan about four times that: the budget is loose and
 * scaled, it only catches an order-of-magnitude regression. */
#if defined(__SANITIZE_ADDRESS__)
#define NORMALIZE_BUDGET_US 25000
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NORMALIZE_BUDGET_US 25000
#endif
#endif
#ifndef NORMALIZE_BUDGET_US
#define NORMALIZE_BUDGET_US 5000
#endif

TEST(normalize_cost_per_sketch)
{
	/* The ingest hot path: an already-canonical 256x256 gray PNG. */
	uint8_t *pix = make_sketch(256, 256);
	size_t len;
	uint8_t *png = lib_png(pix, 256, 256, 1, &len, 0, 8);
	free(pix);
	char why[256];
	int N = 1000;
	double t0 = cpu_now();
	for (int i = 0; i < N; i++) {
		struct image_norm n;
		ASSERT_EQ_INT(image_normalize(png, len, NULL, &n, why, sizeof why), 0);
		image_norm_free(&n);
	}
	double per = (cpu_now() - t0) / N * 1e6;
	printf("image_normalize 256x256 gray PNG (%zu bytes): %.1f us CPU per image\n", len, per);
	free(png); /* before the assertion, so that a failure is not also a leak report */
	ASSERT_OP_DBL(per, <, NORMALIZE_BUDGET_US);
	/* a 512x512 canvas export needs a resize */
	uint8_t *big = make_sketch(512, 512), *png2;
	int erc = image_encode_png(big, 512, 512, 1, 6, &png2, &len);
	free(big);
	ASSERT_EQ_INT(erc, 0);
	t0 = cpu_now();
	for (int i = 0; i < N / 10; i++) {
		struct image_norm n;
		ASSERT_EQ_INT(image_normalize(png2, len, NULL, &n, why, sizeof why), 0);
		image_norm_free(&n);
	}
	printf("image_normalize 512x512 gray PNG (%zu bytes): %.1f us CPU per image\n", len,
	       (cpu_now() - t0) / (N / 10) * 1e6);
	free(png2);
}

RUN_TESTS(init_and_sniff, fast_png_encoder_roundtrips_through_libpng, fast_encoder_compresses_sketches,
	  fast_decoder_matches_libpng_on_every_filter, fast_decoder_matches_libpng_on_synth_set,
	  encoder_checksums_are_zlibs, fast_decoder_undoes_each_filter_at_each_pixel_size, corrupt_png_codes,
	  normalize_pads_to_keep_aspect, normalize_scales_up_small_and_tall_images, jpeg_decodes_and_normalizes,
	  truncated_and_corrupt_are_corrupt, non_image_is_unsupported, decompression_bomb_rejected_from_header,
	  blank_and_all_ink_rejected_with_ratio, alpha_flattens_onto_white, same_pixels_same_hash,
	  sixteen_bit_and_palette_pngs, sub_byte_and_colour_key_pngs_through_libpng, jpeg_gray_and_cmyk,
	  jpeg_corrupt_with_reasons, libvips_is_not_loaded, split_is_deterministic_and_near_fraction, resize_and_fit,
	  normalize_cost_per_sketch, each_side_capped_from_the_header, resize_memory_is_bounded_by_the_output)
