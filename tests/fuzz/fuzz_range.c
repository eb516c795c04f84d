/*
 * fuzz_range.c — libFuzzer target for the Range header of artifact downloads
 * (lib/http_range.c: http_range_parse). Input: 8 bytes of file size (little
 * endian), then the header value. A range it accepts lies inside the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t fsize = 0;
	if (size < 8)
		return 0;
	for (int i = 7; i >= 0; i--)
		fsize = fsize << 8 | data[i];
	uint64_t first = 0, last = 0;
	int rc = http_range_parse((const char *)data + 8, size - 8, fsize, &first, &last);
	if (rc == 1 && (first > last || last >= fsize))
		abort();
	if (rc != 1 && rc != 0 && rc != AT_EUNSATISFIABLE && rc != AT_EINVAL)
		abort();
	return 0;
}
