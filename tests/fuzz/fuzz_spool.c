/*
 * fuzz_spool.c — libFuzzer target for the node's spool file reader
 * (serving/spool.c: spool_decode, what spool_read does with a file's bytes).
 * A file read back after a crash or by hand may hold anything: it must decode
 * to a JSON object and an image offset inside the file, or be refused.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../serving/spool.h" /* the Makefile gives C code -Ilib only */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *meta = (json_t *)1;
	size_t off = SIZE_MAX;
	int rc = spool_decode(data, size, &meta, &off);
	if (rc < 0) {
		if (meta != NULL || rc != AT_ECORRUPT)
			abort();
		return 0;
	}
	if (!json_is_object(meta) || off > size || data[off - 1] != '\n')
		abort();
	free(json_dumps(meta, JSON_COMPACT));
	json_decref(meta);
	return 0;
}
