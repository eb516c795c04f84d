/*
 * fuzz_style_param.c — libFuzzer target for the node's `style` and `alpha`
 * form fields (serving/style_param.c: style_param_number, style_param_alpha).
 * Input: the field's bytes, as multipart hands them over. What either
 * accepts is in range and spelled in digits.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../serving/style_param.h" /* the Makefile gives C code -Ilib only */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t style = 0;
	if (style_param_number(data, size, &style) == 0) {
		if (style > STYLE_PARAM_MAX || size == 0 || data[0] < '0' || data[0] > '9')
			abort();
	}
	float alpha = -1.0f;
	if (style_param_alpha(data, size, &alpha) == 0) {
		if (!(alpha >= 0.0f && alpha <= 1.0f) || size == 0 || size > 31)
			abort();
	}
	return 0;
}
