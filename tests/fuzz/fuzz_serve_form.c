/*
 * fuzz_serve_form.c — libFuzzer target for the multipart reader as the
 * serving node uses it (POST /api/stylize, POST /api/contribute): the
 * Content-Type gate, lib/multipart.c with the node's 8-part cap, then the
 * node's fields looked up, its image fields sniffed and the contributor
 * taken as UTF-8 text (json_stringn), as the handlers do.
 *
 * Input: the Content-Type value, a '\n', then the body. The seeds are the
 * node's own request shapes (tests/fuzz/seeds/fuzz_serve_form/).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image.h"
#include "multipart.h"

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	const char *ct = (const char *)data;
	size_t ctlen = (size_t)(nl - data);
	if (ctlen < 19 || strncasecmp(ct, "multipart/form-data", 19) != 0)
		return 0;
	struct multipart_part parts[8];
	size_t n = 0;
	char why[160];
	if (multipart_parse(ct, ctlen, nl + 1, size - ctlen - 1, parts, 8, &n, why, sizeof why) < 0)
		return 0;
	if (n > 8)
		abort();
	static const char *const images[] = {"image", "contentImage", "styleImage", "styleImage2"};
	for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
		const struct multipart_part *p = multipart_get(parts, n, images[i]);
		if (p)
			sink += (unsigned)image_sniff(p->data, p->len);
	}
	static const char *const texts[] = {"consent", "style", "style2", "alpha"};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		const struct multipart_part *p = multipart_get(parts, n, texts[i]);
		for (size_t k = 0; p && k < p->len; k++)
			sink += p->data[k];
	}
	const struct multipart_part *who = multipart_get(parts, n, "contributor");
	if (who && who->len <= 128) {
		json_t *name = json_stringn((const char *)who->data, who->len);
		json_decref(name);
	}
	return 0;
}
