/*
 * libFuzzer target for the pipeline loader: any bytes must end in a pipeline
 * or in a positioned error — never a crash, a leak, or unbounded work. A
 * successful parse is also serialised and hashed, and the canonical JSON must
 * be stable: serialising twice gives the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../orchestrator/pipeline.h" /* the Makefile gives C code -Ilib only */
#include "../../orchestrator/pipeline_yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pipeline_t *p = NULL;
	struct pipeline_error err;
	int rc = pipeline_yaml_parse("fuzz.yaml", (const char *)data, size, &p, &err);
	if (rc < 0) {
		if (p != NULL || err.line < 1 || err.column < 1 || strncmp(err.text, "fuzz.yaml:", 10) != 0)
			abort();
		return 0;
	}
	struct at_buf a, b;
	char hex[65];
	at_buf_init(&a, 0);
	at_buf_init(&b, 0);
	if (pipeline_to_canonical(p, &a) < 0 || pipeline_to_canonical(p, &b) < 0 || a.len != b.len ||
	    memcmp(a.data, b.data, a.len) != 0 || pipeline_hash(p, hex) < 0 || strlen(hex) != 64)
		abort();
	for (size_t i = 0; i < p->n_stages; i++) /* order is a permutation */
		if (p->order[i] >= p->n_stages)
			abort();
	at_buf_free(&a);
	at_buf_free(&b);
	pipeline_free(p);
	return 0;
}
