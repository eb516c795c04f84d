/*
 * handlers.c — the table of job kinds this worker can run. `--kinds`
 * defaults to every row; `--help` lists them with their doc line.
 *
 * The last column says whether a kind's result may come from the step cache
 * (workers/cache.h): collect (its inputs are the images table) and promote
 * (side effects) never; test kinds never, so the queue's tests see every job run.
 *
 * test.* kinds exist only for the queue's tests and benchmarks (nothing in a
 * pipeline enqueues them); they are harmless in production, where nobody
 * enqueues them.
 */
#include <string.h>

#include "job.h"

const struct job_handler job_handlers[] = {
	{"collect", job_collect, "freeze a dataset: accepted training sketch and painting ids, holdout, manifest sha256",
	 JOB_CACHE_NEVER},
	{"prepare", job_prepare, "dataset -> training and holdout shards (decode, resize, augment, photo->sketch, drop blanks)",
	 JOB_CACHE_INPUTS},
	{"train", job_train, "train (resume / warm start / scratch), checkpointing; register the candidate version",
	 JOB_CACHE_INPUTS},
	{"evaluate", job_evaluate, "score candidate and champion on the frozen holdout; apply the gate",
	 JOB_CACHE_CHAMPION},
	{"promote", job_promote, "register the candidate on canary, bake, then production or automatic rollback",
	 JOB_CACHE_NEVER},
	{"test.noop", job_test_noop, "TEST ONLY: succeeds at once; result {\"worker\",\"attempt\"}", JOB_CACHE_NEVER},
	{"test.sleep", job_test_sleep,
	 "TEST ONLY: payload {\"ms\":N}: sleeps N ms reporting progress; \"checkpoint\":true stops on shutdown,"
	 " \"ignore_cancel\":true ignores cancel", JOB_CACHE_NEVER},
	{"test.fail", job_test_fail, "TEST ONLY: always fails (payload {\"message\":..,\"retry\":bool})", JOB_CACHE_NEVER},
	{"test.crash", job_test_crash, "TEST ONLY: the worker process kills itself (SIGKILL)", JOB_CACHE_NEVER},
	{NULL, NULL, NULL, JOB_CACHE_NEVER},
};

const struct job_handler *job_handler_find(const char *kind)
{
	for (const struct job_handler *h = job_handlers; h->kind; h++)
		if (strcmp(h->kind, kind) == 0)
			return h;
	return NULL;
}
