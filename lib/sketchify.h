/*
 * sketchify.h — the seed's photo → sketch recipe: optional mask → background
 * removal → grayscale → square crop and resize → invert → Gaussian blur →
 * Canny (libvips) with hysteresis → dilation (libvips morphology) → black
 * lines on white → blank filter.
 *
 * Used by the prepare stage for photo sources. With color_edges (the default) edges are
 * found per colour channel, so hue boundaries of equal brightness count too. Thread-safe; deterministic for given input
 * and options.
 */
#ifndef ATELIER_SKETCHIFY_H
#define ATELIER_SKETCHIFY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct sketchify_opts {
	int size;           /* output square side (default 256) */
	int bg_threshold;   /* pixels whose every channel is >= this become white (default 235; 0 = off) */
	int invert;         /* invert before edge detection, as the seed did (default 1) */
	int color_edges;    /* colour input: Canny on each channel, keep the strongest (default 1);
	                       0 = on luma only, as the seed did */
	double blur_sigma;  /* Gaussian blur before Canny (default 1.2; 0 = none) */
	double canny_sigma; /* vips_canny's own smoothing (default 1.0) */
	double low, high;   /* hysteresis thresholds on vips_canny's magnitude, in gray levels
	                       per pixel of the blurred image (default 2, 5) */
	int dilate;         /* dilation radius in pixels, disk-shaped (default 1; 0 = none) */
	double min_ink;     /* blank filter: fewer ink pixels than this fraction is AT_EUNPROCESSABLE (0.002) */
};

void sketchify_opts_init(struct sketchify_opts *o);

/*
 * src: w×h pixels of `channels` (1 or 3) bytes. mask: NULL, or w×h bytes where
 * 0 marks background to drop. The centre square of the source (its shorter
 * side) is resized to size×size — cropping, not padding, so that the padding
 * edge never becomes a line. out: size*size bytes, black (0) lines on white
 * (255). *ink_ratio (may be NULL) gets the fraction of line pixels.
 * Errors: AT_EINVAL, AT_ENOMEM, AT_EINTERNAL (libvips), AT_EUNPROCESSABLE
 * (blank: `why` has the ratio).
 */
int sketchify(const uint8_t *src, int w, int h, int channels, const uint8_t *mask, const struct sketchify_opts *opts,
	      uint8_t *out, double *ink_ratio, char *why, size_t whylen) AT_MUST_CHECK;

#endif
