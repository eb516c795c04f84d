/*
 * synth.h — deterministic synthetic data for the demo, the benches and the
 * tests: a small world of objects people sketch (house, tree, sun, cat face,
 * flower, fish, car, mountain, boat, star, cloud), drawn two ways that never
 * share an instance:
 *
 *   - sketches: hand-like dark strokes on white (low-frequency jitter, pen
 *     width varying along a stroke and per drawing, open ends, overdraw);
 *   - paintings: filled shapes on textured background washes, coloured by one
 *     of SYNTH_FAMILIES style families, with brush-dab texture.
 *
 * A seed picks the class (uniformly), the instance and, for a painting, the
 * style family. synth_sketch(s) and synth_painting(s) draw from separate
 * streams derived from s: a sketch stream is always even, a painting stream
 * always odd, so no sketch is ever the same instance as any painting.
 * Same seed, same size → the same bytes (within one build). Thread-safe.
 *
 * Also "photos" (smooth backgrounds, shaded objects) for the photo → sketch
 * path.
 */
#ifndef ATELIER_SYNTH_H
#define ATELIER_SYNTH_H

#include <stdint.h>

#include "err.h"

enum synth_class {
	SYNTH_HOUSE,
	SYNTH_TREE,
	SYNTH_SUN,
	SYNTH_CAT,
	SYNTH_FLOWER,
	SYNTH_FISH,
	SYNTH_CAR,
	SYNTH_MOUNTAIN,
	SYNTH_BOAT,
	SYNTH_STAR,
	SYNTH_CLOUD,
	SYNTH_CLASSES
};

enum synth_family {
	SYNTH_IMPRESSIONIST, /* warm, broken colour, many short dabs, no outline */
	SYNTH_WATERCOLOUR,   /* cool, light, translucent washes, soft edges */
	SYNTH_POSTER,        /* saturated flat colour, thick dark outlines */
	SYNTH_OIL,           /* earthy, dark, long strokes, soft brown outlines */
	SYNTH_FAMILIES
};

struct synth_info {
	int cls;         /* enum synth_class */
	int family;      /* enum synth_family; -1 for a sketch */
	double pen;      /* a sketch's nominal pen width in pixels of this size; 0 for a painting */
	uint64_t stream; /* the random stream the instance was drawn from */
};

/* gray: size*size bytes, dark strokes on white. size 16..4096. info may be NULL. */
int synth_sketch(uint64_t seed, int size, uint8_t *gray, struct synth_info *info) AT_MUST_CHECK;

/* rgb: size*size*3 bytes. size 16..4096. info may be NULL. */
int synth_painting(uint64_t seed, int size, uint8_t *rgb, struct synth_info *info) AT_MUST_CHECK;

/* The same with the class (and family) forced rather than drawn: contact
 * sheets and tests that need every class. cls 0..SYNTH_CLASSES-1; family -1
 * (drawn from the seed) or 0..SYNTH_FAMILIES-1. */
int synth_sketch_of(uint64_t seed, int cls, int size, uint8_t *gray, struct synth_info *info) AT_MUST_CHECK;
int synth_painting_of(uint64_t seed, int cls, int family, int size, uint8_t *rgb,
		      struct synth_info *info) AT_MUST_CHECK;

/* "house", "tree", …; "?" out of range. */
const char *synth_class_name(int cls);
/* "impressionist", "watercolour", "poster", "oil"; "?" out of range. */
const char *synth_family_name(int family);

/* A photo-like image: gradient sky and ground, shaded spheres and boxes with
 * soft shadows, a little sensor noise. rgb: size*size*3 bytes. */
int synth_photo(uint64_t seed, int size, uint8_t *rgb) AT_MUST_CHECK;

/*
 * A sketch and a painting as the train stage sees them, for measurements
 * outside the pipeline (bench/train/recipe, tests/unit/test_ranking): drawn at
 * SYNTH_STORED px, the sketch normalised there (ingest) and again at size
 * (prepare, lib/sketchnorm), the painting fitted to size. gray: size*size
 * bytes, rgb: size*size*3. Errors as synth_sketch / sketchnorm_apply /
 * image_fit, and AT_ENOMEM.
 */
#define SYNTH_STORED 256
int synth_sketch_as_trained(uint64_t seed, int size, uint8_t *gray) AT_MUST_CHECK;
int synth_painting_as_trained(uint64_t seed, int size, uint8_t *rgb) AT_MUST_CHECK;

#endif
