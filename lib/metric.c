/*
 * metric.c — the evaluate stage's metric table (metric.h).
 */
#include "metric.h"

#include <stddef.h>
#include <string.h>

static const struct {
	const char *name;
	int higher_better;
} metrics[] = {
#define METRIC_ROW(name, higher, doc) {name, higher},
	METRIC_MAP(METRIC_ROW)
#undef METRIC_ROW
};

int metric_direction(const char *name)
{
	for (size_t i = 0; name && i < sizeof metrics / sizeof metrics[0]; i++)
		if (strcmp(metrics[i].name, name) == 0)
			return metrics[i].higher_better;
	return -1;
}

const char *metric_name(int i)
{
	return i >= 0 && (size_t)i < sizeof metrics / sizeof metrics[0] ? metrics[i].name : NULL;
}
