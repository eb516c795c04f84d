/*
 * stage_kind.h — the one list of stage kinds. Every other list is made from
 * it: atelierd's enum pipeline_kind and its YAML schema (orchestrator/
 * pipeline.h), the worker's handler table (workers/handlers.c) and
 * pipelines/README.md's kind table. The stage -> job kind mapping that
 * atelier_advance_run applies when it enqueues a stage (sql/008_step_cache.sql,
 * first written in 003) is SQL, which cannot include a C header: a run of
 * every kind in tests/unit/test_queue.c checks it against this list.
 *
 * X(ENUM, fn, "stage kind", "job kind", test_only, cache, doc)
 *   fn         the worker's handler is job_<fn> (workers/job.h)
 *   stage kind what a pipeline's YAML writes (`kind:`, or the stage's name)
 *   job kind   the jobs.kind the scheduler enqueues and a worker claims:
 *              test-only kinds run as test.<kind>, so that nobody claims them
 *              by accident in production
 *   test_only  exists only so that tests can drive the scheduler and the queue
 *              through timeouts, failures and worker crashes without a model
 *   cache      whether a result may come from the step cache (workers/cache.h):
 *              NEVER for kinds whose result depends on the world outside the
 *              payload (collect reads the images table, promote moves
 *              channels) and for test kinds (the queue's tests must see every
 *              job run); INPUTS; CHAMPION (the key adds the production version)
 *   doc        one line, for the worker's --help and pipelines/README.md
 */
#ifndef ATELIER_STAGE_KIND_H
#define ATELIER_STAGE_KIND_H

#define STAGE_KIND_MAP(X)                                                                                    \
	X(COLLECT, collect, "collect", "collect", 0, NEVER,                                                  \
	  "freeze a dataset: the accepted training sketch and painting ids, the holdout, a manifest sha256") \
	X(PREPARE, prepare, "prepare", "prepare", 0, INPUTS,                                                 \
	  "the frozen images -> training and holdout shards (decode, resize, augment, photo->sketch, "       \
	  "drop blanks)")                                                                                    \
	X(TRAIN, train, "train", "train", 0, INPUTS,                                                         \
	  "train (resume / warm start / scratch), checkpointing as it goes; register the candidate version") \
	X(EVALUATE, evaluate, "evaluate", "evaluate", 0, CHAMPION,                                           \
	  "score candidate and champion on the frozen holdout; apply the gate")                              \
	X(PROMOTE, promote, "promote", "promote", 0, NEVER,                                                  \
	  "register the candidate on canary, bake, then production or automatic rollback")                   \
	X(SLEEP, test_sleep, "sleep", "test.sleep", 1, NEVER,                                                \
	  "test only: sleeps params.duration (queue tests: payload.ms) reporting progress; "                 \
	  "\"checkpoint\":true stops on shutdown, \"ignore_cancel\":true ignores cancel")                    \
	X(FAIL, test_fail, "fail", "test.fail", 1, NEVER,                                                    \
	  "test only: fails with params.message (\"retry\":false: at once, no retry)")                       \
	X(CRASH, test_crash, "crash", "test.crash", 1, NEVER,                                                \
	  "test only: the worker process kills itself (SIGKILL) params.after into the job")                  \
	X(NOOP, test_noop, "noop", "test.noop", 1, NEVER,                                                    \
	  "test only: succeeds at once; result {\"worker\",\"attempt\"}")

#endif
