/*
 * style_param.h — the node's `style` and `alpha` form fields of POST
 * /api/stylize, read from their bytes as multipart hands them over (not
 * NUL-terminated). Pure functions apart from the handler, so that they are
 * unit-tested and fuzzed (tests/fuzz/fuzz_style_param.c).
 *
 * Strict on purpose: one style has one spelling. strtoll and strtod take
 * blanks, a sign, "0x" and (for strtod) "inf"; each would make another
 * request name the same painting or one the form never meant.
 */
#ifndef SERVE_STYLE_PARAM_H
#define SERVE_STYLE_PARAM_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The largest style: the model seeds its generator (libtorch's mt19937) with
 * the low 32 bits of the number, so 2^32 would paint as 0 does. */
#define STYLE_PARAM_MAX UINT32_MAX

/* A style number: ASCII digits only, 0..STYLE_PARAM_MAX (leading zeros are
 * the same number). AT_EUNPROCESSABLE otherwise; *style is set only on 0. */
int style_param_number(const uint8_t *s, size_t len, uint64_t *style) AT_MUST_CHECK;

/* The mixing weight: a decimal number in [0, 1], digits with an optional
 * fraction and exponent ("0.25", ".5", "1", "5e-1"); no sign, no blank, no
 * hex, inf or nan; at most 31 bytes. AT_EUNPROCESSABLE otherwise; *alpha is
 * set only on 0. */
int style_param_alpha(const uint8_t *s, size_t len, float *alpha) AT_MUST_CHECK;

#endif
