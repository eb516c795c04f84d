/*
 * slice.c — images.source -> holdout slice (slice.h).
 */
#include "slice.h"

#include <string.h>

static const char *const names[] = {
#define SLICE_NAME(e, name, doc) name,
	SLICE_MAP(SLICE_NAME)
#undef SLICE_NAME
};

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

enum slice slice_of_source(const char *source)
{
	if (!source || !*source || strcmp(source, "api") == 0 || starts(source, "import"))
		return SLICE_IMPORTS;
	if (strcmp(source, "synth") == 0)
		return SLICE_SYNTH;
	if (starts(source, "node:"))
		return SLICE_CONTRIBUTIONS;
	if (starts(source, "photo"))
		return SLICE_PHOTO;
	return SLICE_OTHER;
}

const char *slice_name(int s) { return s >= 0 && s < SLICE_COUNT_ ? names[s] : NULL; }

int slice_from_name(const char *name)
{
	for (int s = 0; name && s < SLICE_COUNT_; s++)
		if (strcmp(names[s], name) == 0)
			return s;
	return -1;
}
