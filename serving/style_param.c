/*
 * style_param.c — the `style` and `alpha` form fields (see style_param.h).
 *
 * Each byte is checked against the grammar before any conversion, so the
 * C library's lenient readers see only what we accept.
 */
#include "style_param.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

int style_param_number(const uint8_t *s, size_t len, uint64_t *style)
{
	if (len == 0)
		return AT_EUNPROCESSABLE;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return AT_EUNPROCESSABLE;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > STYLE_PARAM_MAX) /* checked each digit: v stays below 2^36, it cannot wrap */
			return AT_EUNPROCESSABLE;
	}
	*style = v;
	return 0;
}

/* Digits from i; returns the index after them. */
static size_t skip_digits(const uint8_t *s, size_t len, size_t i)
{
	while (i < len && is_digit(s[i]))
		i++;
	return i;
}

int style_param_alpha(const uint8_t *s, size_t len, float *alpha)
{
	char buf[32];
	if (len == 0 || len >= sizeof buf)
		return AT_EUNPROCESSABLE;
	size_t i = skip_digits(s, len, 0);
	size_t whole = i;
	if (i < len && s[i] == '.')
		i = skip_digits(s, len, i + 1);
	if (whole == 0 && i <= 1)
		return AT_EUNPROCESSABLE; /* no digit before the exponent: "", ".", ".e1" */
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t e = i + 1;
		if (e < len && (s[e] == '+' || s[e] == '-'))
			e++;
		i = skip_digits(s, len, e);
		if (i == e)
			return AT_EUNPROCESSABLE;
	}
	if (i != len)
		return AT_EUNPROCESSABLE;
	memcpy(buf, s, len);
	buf[len] = 0;
	double v = strtod(buf, NULL);
	if (!isfinite(v) || v < 0 || v > 1)
		return AT_EUNPROCESSABLE;
	*alpha = (float)v;
	return 0;
}
