/*
 * proc_status.h — one field of /proc/PID/status in kB (VmRSS:, VmHWM:, ...),
 * for the benches that report a process's memory. -1 when unreadable.
 */
#ifndef ATELIER_BENCH_PROC_STATUS_H
#define ATELIER_BENCH_PROC_STATUS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline long proc_status_kb(const char *pid, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%s/status", pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, strlen(key)))
			kb = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	return kb;
}

#endif
