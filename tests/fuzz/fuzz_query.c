/*
 * fuzz_query.c — libFuzzer target for the query-string parser behind
 * http_req_query (lib/http.c: http_query_parse). Input: the query string
 * without its '?'. Each pair is read so that ASan checks it; a decoded name
 * or value is never longer than the input; more than MAXQ pairs is AT_ERANGE.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define MAXQ 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *names[MAXQ], *values[MAXQ];
	int n = http_query_parse((const char *)data, size, names, values, MAXQ);
	if (n < 0) {
		if (n != AT_ERANGE && n != AT_ENOMEM)
			abort();
		return 0; /* nothing stored, nothing to free */
	}
	if (n > MAXQ)
		abort();
	for (int i = 0; i < n; i++) {
		if (strlen(names[i]) > size || strlen(values[i]) > size)
			abort();
		free(names[i]);
		free(values[i]);
	}
	return 0;
}
