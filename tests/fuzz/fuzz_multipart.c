/*
 * fuzz_multipart.c — libFuzzer target for lib/multipart.c.
 *
 * Input: the Content-Type value, a '\n', then the body (no '\n' at all: the
 * whole input is the body under a fixed boundary). Every returned span is read
 * so ASan checks that it lies inside the input.
 */
#include <stdint.h>
#include <string.h>

#include "multipart.h"

static volatile unsigned sink;

static void touch(const void *p, size_t n)
{
	const uint8_t *b = p;
	unsigned s = 0;
	for (size_t i = 0; b && i < n; i++)
		s += b[i];
	sink += s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char def_ct[] = "multipart/form-data; boundary=b";
	const char *ct = def_ct;
	size_t ctlen = sizeof def_ct - 1;
	const uint8_t *body = data;
	size_t len = size;
	const uint8_t *nl = memchr(data, '\n', size);
	if (nl) {
		ct = (const char *)data;
		ctlen = (size_t)(nl - data);
		body = nl + 1;
		len = size - ctlen - 1;
	}
	struct multipart_part parts[8];
	size_t n = 0;
	char why[128];
	if (multipart_parse(ct, ctlen, body, len, parts, 8, &n, why, sizeof why) == 0) {
		for (size_t i = 0; i < n; i++) {
			touch(parts[i].name, parts[i].name_len);
			touch(parts[i].filename, parts[i].filename_len);
			touch(parts[i].content_type, parts[i].content_type_len);
			touch(parts[i].data, parts[i].len);
		}
		(void)multipart_get(parts, n, "image");
	}
	return 0;
}
