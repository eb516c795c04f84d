/*
 * fuzz_shard.c — libFuzzer target for the training shard decoder
 * (workers/dataset.c: shard_decode, what shard_read_file does with a file's
 * bytes). Any bytes decode or are refused; a shard that decodes encodes back
 * to the same bytes (the reserved header bytes aside, which encode as 0).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../workers/dataset.h" /* the Makefile gives C code -Ilib only */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shard s;
	if (shard_decode(data, size, &s) < 0)
		return 0;
	uint8_t *out = NULL;
	size_t len = 0;
	if (shard_encode(&s, &out, &len) < 0 || len != size || memcmp(out, data, 24) != 0 ||
	    memcmp(out + SHARD_HEADER, data + SHARD_HEADER, size - SHARD_HEADER) != 0)
		abort();
	/* The float views the trainer reads, on the first and last sample. */
	float *f = malloc((size_t)3 * s.size * s.size * sizeof *f);
	if (f && s.n_sketches) {
		shard_sketch_float(&s, 0, f);
		shard_sketch_float(&s, s.n_sketches - 1, f);
	}
	if (f && s.n_paintings) {
		shard_painting_float(&s, 0, f);
		shard_painting_float(&s, s.n_paintings - 1, f);
	}
	free(f);
	free(out);
	shard_free(&s);
	return 0;
}
