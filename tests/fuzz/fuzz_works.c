/*
 * fuzz_works.c — libFuzzer target for a published work's style, title and
 * receipt (lib/works.c: works_style_parse, works_text, receipt_hash),
 * which the node reads from the page's form and header and atelierd from
 * the node's. Input: the field's bytes. What the style parser accepts has a
 * key the gallery's filter accepts; accepted text is valid, trimmed, capped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "works.h"
#include "receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *style = NULL;
	char key[WORKS_STYLE_KEY_MAX], why[160];
	if (works_style_parse((const char *)data, size, &style, key, why, sizeof why) == 0) {
		if (!json_is_object(style) || works_style_key_valid(key) != 0)
			abort();
	}
	json_decref(style);
	char *out = NULL;
	if (works_text(data, size, 8, &out, why, sizeof why) == 0 && out) {
		size_t n = strlen(out);
		if (utf8_check(out, n, NULL) != 0 || out[0] == ' ' || out[n - 1] == ' ' || n > 8 * 4)
			abort();
	}
	free(out);
	uint8_t sha[32];
	if (receipt_hash((const char *)data, size, sha) == 0 && size != RECEIPT_LEN)
		abort();
	return 0;
}
