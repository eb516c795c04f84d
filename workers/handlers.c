/*
 * handlers.c — the table of job kinds this worker can run, one row per stage
 * kind of lib/stage_kind.h (its job kind, handler job_<fn>, cache policy and
 * doc). `--kinds` defaults to every row; `--help` lists them with their doc.
 *
 * test.* kinds exist only for the queue's tests and benchmarks and for test
 * pipelines (sleep, fail, crash, noop stages); they are harmless in
 * production, where nobody enqueues them.
 */
#include <string.h>

#include "job.h"
#include "stage_kind.h"

const struct job_handler job_handlers[] = {
#define JOB_HANDLER_ROW(e, fn, name, job, test, cache, doc) {job, job_##fn, doc, JOB_CACHE_##cache},
	STAGE_KIND_MAP(JOB_HANDLER_ROW)
#undef JOB_HANDLER_ROW
		{NULL, NULL, NULL, JOB_CACHE_NEVER},
};

const struct job_handler *job_handler_find(const char *kind)
{
	for (const struct job_handler *h = job_handlers; h->kind; h++)
		if (strcmp(h->kind, kind) == 0)
			return h;
	return NULL;
}
