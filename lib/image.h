/*
 * image.h — decoding, normalisation and encoding of the images Atelier stores
 * (sketches and paintings) and feeds to the model.
 *
 * Ingest calls image_normalize() from a uv threadpool worker: many run at once,
 * so everything here is reentrant and thread-safe once image_init() has run
 * (every entry point also calls it). Inputs are untrusted bytes: the pixel
 * count and each side are checked from the header before any pixel is decoded, and every
 * failure is a clean AT_E* code with a human reason in `why`.
 *
 * Normalised form: 8-bit, alpha flattened onto white, grayscale (1 channel,
 * sketches) or sRGB (3 channels, paintings), fitted into a size×size square
 * preserving aspect ratio and padded with white (never stretched). Sketches
 * (opts.sketchnorm, the default) go through lib/sketchnorm: cropped to their
 * ink with a margin and their strokes brought to size/40 pixels; their ink
 * range (min_ink..max_ink) is judged on the decoded input, and ink_ratio
 * reports that input's ratio on a rejection and the stored image's otherwise.
 *
 * Pixel buffers are row-major, interleaved, no row padding; every buffer this
 * API returns is malloc'd and owned by the caller (free()).
 */
#ifndef ATELIER_IMAGE_H
#define ATELIER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum image_format {
	IMAGE_PNG = 1,
	IMAGE_JPEG = 2,
};

enum image_domain {
	IMAGE_SKETCH = 0,   /* 1 channel, black ink on white */
	IMAGE_PAINTING = 1, /* 3 channels sRGB */
};

#define IMAGE_DEFAULT_SIZE 256
#define IMAGE_DEFAULT_MAX_PIXELS 40000000ULL
/* Each side's cap, whatever the pixel count, checked from the header with
 * the pixel cap (a 40,000,000x1 PNG is 39 KB and under the pixel cap, but
 * row buffers and resampling grow with a side). The serving model takes up to
 * this too; lib/sketchnorm uses the same cap. */
#define IMAGE_MAX_SIDE 8192
/* png_level for image_encode_png(): the built-in encoder (fixed-Huffman
 * deflate with run/row matches). On a 256x256 sketch: 0.054 ms, zlib level 1
 * 0.19 ms, with 9 % smaller files (bench/image; docs/design.md). */
#define IMAGE_PNG_FAST 0

struct image_opts {
	enum image_domain domain;
	int size;            /* canonical square side (default 256) */
	uint64_t max_pixels; /* header width*height cap (default 40 MP) */
	int ink_threshold;   /* a pixel is ink when its luma < this (default 128) */
	double min_ink;      /* accepted ink ratio range (sketch: 0.002..0.95, */
	double max_ink;      /*   painting: 0..1) */
	int min_contrast;    /* max-min luma must reach this (painting: 8, sketch: 0) */
	int png_level;       /* IMAGE_PNG_FAST or zlib 1..9 (sketch: fast, painting: 1) */
	int sketchnorm;      /* sketch domain: lib/sketchnorm (crop to the ink, strokes brought to
	                         size/40 px) instead of a plain fit; default 1, 0 for photos */
};

/* Fills o with the defaults of a domain. image_normalize(opts=NULL) uses the
 * sketch defaults. */
void image_opts_init(struct image_opts *o, enum image_domain domain);

struct image_norm {
	uint8_t *png; /* the normalised image, PNG-encoded (malloc'd) */
	size_t png_len;
	int width, height, channels;
	double ink_ratio;
	uint8_t sha256[32]; /* over the normalised pixels, see image_pixels_sha256 */
	char sha256_hex[65];
	uint64_t phash; /* sketches: image_dhash64 of the normalised pixels; 0 otherwise */
};

/* A decoded image. */
struct image_raw {
	uint8_t *pix; /* malloc'd, width*height*channels bytes */
	int width, height, channels;
};

/* Builds the codec tables and fetches SHA-256 once (thread-safe,
 * idempotent). Decoding uses libpng and libjpeg-turbo, never libvips: a
 * process that only decodes uploads does not load it. */
int image_init(void) AT_MUST_CHECK;

/* IMAGE_PNG or IMAGE_JPEG from the magic bytes, else AT_EUNSUPPORTED. */
int image_sniff(const uint8_t *data, size_t len);

/*
 * Decode, check and normalise an uploaded image. Errors: AT_EUNSUPPORTED (not
 * PNG/JPEG), AT_EUNPROCESSABLE (too many pixels or a side over IMAGE_MAX_SIDE
 * — decided from the header alone —, ink ratio or contrast out of range), AT_ECORRUPT (truncated or
 * undecodable), AT_ENOMEM. `why` (may be NULL) gets a one-line reason. On
 * success *out owns png; release with image_norm_free().
 */
int image_normalize(const uint8_t *data, size_t len, const struct image_opts *opts, struct image_norm *out, char *why,
		    size_t whylen) AT_MUST_CHECK;
void image_norm_free(struct image_norm *n);

/* sha256 of (width, height, channels as 3 big-endian uint32) ‖ pixels: equal
 * pixels give equal hashes whatever file they came from. */
/* A 64-bit difference hash of a gray image (dHash): the image averaged down
 * to 9×8 cells, one bit per horizontally adjacent pair (left brighter than
 * right). Near-identical drawings differ in few bits (ingest's near-duplicate
 * check compares them by Hamming distance). */
uint64_t image_dhash64(const uint8_t *gray, int w, int h);
void image_pixels_sha256(const uint8_t *pix, int w, int h, int channels, uint8_t sha[32]);

/* "train" or "holdout", a pure function of the hash: holdout iff the first 8
 * bytes (big-endian) fall below holdout_fraction * 2^64. */
const char *image_split(const uint8_t sha[32], double holdout_fraction);

/*
 * Width and height from the header alone (PNG IHDR, JPEG SOF), checked as
 * image_decode() checks them: each side against IMAGE_MAX_SIDE and their
 * product against max_pixels (0 = the default cap). For a caller that keeps
 * an upload without decoding it (a node's /api/contribute spool). Errors:
 * AT_EUNSUPPORTED, AT_EUNPROCESSABLE (a cap; `why` names the side or the
 * pixel count and the cap), AT_ECORRUPT (no readable header), AT_ENOMEM.
 * width/height may be NULL.
 */
int image_probe(const uint8_t *data, size_t len, uint64_t max_pixels, int *width, int *height, char *why,
		size_t whylen) AT_MUST_CHECK;

/* ---- decode / encode helpers for the model, serving and workers ---- */

/* Decode PNG/JPEG to 8-bit with `channels` = 1 (gray) or 3 (sRGB), alpha
 * flattened onto white, at its own size. max_pixels 0 = default cap. */
int image_decode(const uint8_t *data, size_t len, int channels, uint64_t max_pixels, struct image_raw *out, char *why,
		 size_t whylen) AT_MUST_CHECK;
void image_raw_free(struct image_raw *r);

/* Decode and fit into size×size (aspect kept, white padding); *pix is
 * malloc'd size*size (gray) or size*size*3 (rgb) bytes. */
int image_decode_gray(const uint8_t *data, size_t len, int size, uint8_t **pix) AT_MUST_CHECK;
int image_decode_rgb(const uint8_t *data, size_t len, int size, uint8_t **pix) AT_MUST_CHECK;

/* Encoders; *out is malloc'd. channels 1, 2 (gray+alpha), 3 or 4 for PNG. */
int image_encode_png(const uint8_t *pix, int w, int h, int channels, int level, uint8_t **out,
		     size_t *len) AT_MUST_CHECK;
int image_encode_jpeg(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *len) AT_MUST_CHECK;

/* Resample src (sw×sh) to dst (dw×dh), same channel count; antialiased
 * (triangle filter widened by the shrink factor) when shrinking, bilinear when
 * growing. Past a shrink factor of IMAGE_RESIZE_MAX_FACTOR an integer box
 * average comes first, so the filter's weight tables and float rows hold
 * O(dw·IMAGE_RESIZE_MAX_FACTOR) and O(dh·dw·IMAGE_RESIZE_MAX_FACTOR·channels)
 * values, whatever the input's sides. */
#define IMAGE_RESIZE_MAX_FACTOR 8
int image_resize(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst, int dw, int dh) AT_MUST_CHECK;
/* Scale src to fit size×size keeping its aspect ratio, centred, the rest
 * white. dst holds size*size*channels bytes. */
int image_fit(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst, int size) AT_MUST_CHECK;

/* Converts interleaved gray/gray+alpha/rgb/rgba (in_channels 1..4) to
 * out_channels 1 or 3, flattening alpha onto white. Gray uses Rec.601 luma. */
void image_convert(const uint8_t *src, int in_channels, uint8_t *dst, int out_channels, size_t npix);

/* Fraction of pixels whose luma is below threshold (channels 1 or 3). */
double image_ink_ratio(const uint8_t *pix, int w, int h, int channels, int threshold);

#endif
