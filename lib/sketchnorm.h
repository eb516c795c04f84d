/*
 * sketchnorm.h — the one sketch normalisation: a gray drawing (dark strokes
 * on white, any canvas size, any pen) → the size×size gray square a model
 * sees. Ingest (lib/image.c, sketch domain), prepare (workers/jobs_prepare.c,
 * drawn and photo-derived sketches) and serving (serving/stylize.c, the
 * warm-up in serving/model_slot.c) all call sketchnorm_apply(), so that a
 * stroke reaches the model at the same width whichever way it came in.
 *
 * Steps: ink (luma < threshold) bounding box → a square around it with a
 * margin (aspect kept, white padding, centred) → a working grid of
 * min(4·size, 256) .. min(8·size, 512) pixels a side (ink-preserving block
 * minimum when the crop is larger, bilinear when smaller) → stroke width
 * estimated from a chamfer distance transform (median over ridge pixels) →
 * the square re-centred on the box of the strokes' centre lines, so that the
 * crop does not depend on the pen → strokes dilated or eroded on the working
 * grid, with antialiased edges, to SKETCHNORM_STROKE_FRAC of the output side
 * → the antialiased downscale of lib/image (image_resize).
 *
 * Strokes come out at size/40 output pixels (1.6 px at 64, 6.4 px at 256; at
 * least SKETCHNORM_MIN_STROKE), a fraction of the side, so normalising a
 * 256-px stored sketch again to 64 px changes its strokes little. The output
 * is drawn again from the ink mask: pencil shading lighter than the threshold
 * is dropped and every stroke comes out black. An input that is already
 * normalised at this size (crop within a pixel of the square, strokes within
 * 15 % of the target) is copied unchanged, so a stored sketch normalised
 * again keeps its bytes and its hash.
 *
 * Cost is O(input pixels) for the bounding box and the block minimum, then
 * O(512²) at most (O(size²) past size 512); no allocation depends on the input beyond the caps.
 * Reentrant and thread-safe (no global state).
 */
#ifndef ATELIER_SKETCHNORM_H
#define ATELIER_SKETCHNORM_H

#include <stdint.h>

#include "err.h"
#include "image.h"

/* Target stroke width, as a fraction of the output side (1/40). */
#define SKETCHNORM_STROKE_FRAC 0.025
/* ... and never thinner than this many output pixels (matters below 60 px). */
#define SKETCHNORM_MIN_STROKE 1.5
/* Margin around the ink box on each side, a fraction of the box's longer side. */
#define SKETCHNORM_MARGIN 0.08
/* Caps: output side, input side and input pixels. */
#define SKETCHNORM_MIN_SIZE 8
#define SKETCHNORM_MAX_SIZE 4096           /* am_config image_size's own cap */
#define SKETCHNORM_MAX_SIDE IMAGE_MAX_SIDE /* the decoders' cap: one number for every path */
#define SKETCHNORM_MAX_PIXELS 100000000ULL

struct sketchnorm_opts {
	int threshold; /* a pixel is ink when its luma < this (default 128) */
	double margin; /* default SKETCHNORM_MARGIN; 0..1 */
	double stroke; /* target stroke width in output px; 0 = the default (size/40, >= 1.5) */
};

void sketchnorm_opts_init(struct sketchnorm_opts *o);

/* What sketchnorm_apply() did, for logs, headers and tests. */
struct sketchnorm_info {
	int bbox_x, bbox_y, bbox_w, bbox_h; /* ink bounding box, input pixels */
	double crop_x, crop_y, crop_side;   /* the input square the output shows, fractional (it may reach past
					       the input's edges: white there, and crop_x/y may be negative) */
	int work_side;                      /* side of the working grid */
	double scale;                       /* output pixels per input pixel (size / crop_side) */
	double stroke_in;                   /* estimated stroke width, input pixels */
	double stroke_out;                  /* the width strokes were brought to, output pixels */
	double ink_ratio;                   /* fraction of output pixels with luma < threshold */
	int passed_through;                 /* 1: the input was already normalised (size×size, crop and
					       strokes within tolerance) and was copied unchanged */
};

/*
 * gray: w×h bytes (row-major, no padding). out: size*size bytes. opts and
 * info may be NULL. Errors: AT_EINVAL (bad arguments), AT_ERANGE (size or
 * input past the caps), AT_EUNPROCESSABLE (no ink: out is untouched, and
 * the caller decides whether that rejects the image or passes it through),
 * AT_ENOMEM.
 */
int sketchnorm_apply(const uint8_t *gray, int w, int h, int size, const struct sketchnorm_opts *opts, uint8_t *out,
		     struct sketchnorm_info *info) AT_MUST_CHECK;

#endif
