/*
 * synth.h — deterministic synthetic data for the demo and the tests: colourful
 * "paintings" (shapes, colour fields, texture, brush strokes), the sketch of a
 * painting drawn by the project's own edge extraction (sketchify), and
 * "photos" (smooth backgrounds, shaded objects) for the photo → sketch path.
 *
 * Same seed, same size → the same bytes (within one build). Thread-safe.
 */
#ifndef ATELIER_SYNTH_H
#define ATELIER_SYNTH_H

#include <stdint.h>

#include "err.h"

/* rgb: size*size*3 bytes. size 16..4096. */
int synth_painting(uint64_t seed, int size, uint8_t *rgb) AT_MUST_CHECK;

/* A painting and its sketch (gray: size*size bytes, black lines on white,
 * never blank: the seed is deterministically re-drawn until it has lines). */
int synth_pair(uint64_t seed, int size, uint8_t *rgb, uint8_t *gray) AT_MUST_CHECK;

/* A photo-like image: gradient sky and ground, shaded spheres and boxes with
 * soft shadows, a little sensor noise. rgb: size*size*3 bytes. */
int synth_photo(uint64_t seed, int size, uint8_t *rgb) AT_MUST_CHECK;

#endif
