/*
 * job.h — what a job handler sees: the handler table entry and the job
 * context API.
 *
 * A handler runs on one of the worker's slot threads (--concurrency of them,
 * so handlers of different jobs may run at once) and returns 0 (success; the
 * result set with job_set_result is stored) or a negative AT_E* code (the
 * attempt failed; the message set with job_errorf is stored and the job is
 * retried after a backoff while attempts remain, unless job_no_retry was
 * called). Long handlers call job_progress() now and then and must return
 * soon after job_cancelled() becomes non-zero (cancel requested, timeout, or
 * lease lost); what they return then hardly matters — the worker decides the
 * outcome from the reason.
 *
 * Worker shutdown is gentler: job_stopping() becomes non-zero and the job has
 * the worker's grace period to finish. A handler that cannot finish in time
 * (training) saves what it can (a checkpoint) and returns an error: the job
 * is then released back to the queue without counting the attempt. A handler
 * that ignores it is released all the same when the grace period runs out.
 *
 * Adding a kind: a row in lib/stage_kind.h (the handler table in
 * workers/handlers.c and atelierd's pipeline kinds follow from it), its
 * handler job_<fn> in workers/jobs_<family>.c declared below, and its params
 * schema in orchestrator/pipeline_yaml.c.
 */
#ifndef ATELIER_WORKERS_JOB_H
#define ATELIER_WORKERS_JOB_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "err.h"
#include "queue.h"

struct job_ctx;
typedef int (*job_fn)(struct job_ctx *ctx);

/* Whether a kind's result may be reused from an identical earlier job
 * (workers/cache.h). A kind whose result depends on the world outside its
 * payload (collect reads the images table, promote moves channels) is NEVER. */
enum job_cache {
	JOB_CACHE_NEVER = 0,
	JOB_CACHE_INPUTS,   /* key: kind, model, params, gate, inputs, code version */
	JOB_CACHE_CHAMPION, /* the same plus the model's production version (evaluate) */
};

struct job_handler {
	const char *kind; /* the jobs.kind it runs */
	job_fn run;
	const char *doc;      /* one line for --help */
	enum job_cache cache; /* JOB_CACHE_NEVER unless the row says otherwise */
};

/* The table, terminated by a row with kind == NULL (workers/handlers.c). */
extern const struct job_handler job_handlers[];
const struct job_handler *job_handler_find(const char *kind);

/* ---- context API for handlers ---- */

int64_t job_id(const struct job_ctx *ctx);
int job_attempt(const struct job_ctx *ctx); /* 1 on the first attempt */
const char *job_kind(const struct job_ctx *ctx);
const char *job_worker_name(const struct job_ctx *ctx);
/* The owner token of this attempt (a new one per claim). A handler's own
 * writes for its job (a checkpoint row, a model version) are made
 * conditional on atelier_job_owned(job_id, token) (sql/017_hosts.sql), so an
 * attempt whose lease ran out — its worker cut off, the job re-claimed —
 * writes nothing when it comes back. */
int64_t job_token(const struct job_ctx *ctx);
/* The handlers' database connection (blocking libpq) of the job's slot, its
 * own: not the queue's (whose planner settings are pinned for the claim) nor
 * the heartbeat thread's. Opened on first use; one left inside a transaction
 * is closed after the job. Borrowed. */
PGconn *job_db(struct job_ctx *ctx);
/* The worker's settings the handlers use (workers/main.c's table): the
 * artifact store URI (--artifacts), the model device (--device; NULL = auto),
 * libtorch's threads for training (--train-threads; 0 = its own choice) and
 * the forced training preset (--train-preset: "gpu", "cpu" or NULL). */
const char *job_artifacts_uri(const struct job_ctx *ctx);
const char *job_device(const struct job_ctx *ctx);
int job_train_threads(const struct job_ctx *ctx);
const char *job_train_preset(const struct job_ctx *ctx);
/* Create a private scratch folder $TMPDIR/atelier-NAME-XXXXXX (/tmp when
 * TMPDIR is unset) into dir[cap]. The handler removes it when done. */
int job_scratch_dir(const char *name, char *dir, size_t cap) AT_MUST_CHECK;
/* The payload object (borrowed for the handler's duration; never NULL). */
json_t *job_payload(const struct job_ctx *ctx);

/* Report progress: fraction in 0..1 (< 0 keeps the old), msg may be NULL,
 * eta_s < 0 unknown. Cheap: stored locally, sent by the heartbeat thread. */
void job_progress(struct job_ctx *ctx, double fraction, const char *msg, int eta_s);
/* Non-zero once the handler should stop. */
int job_cancelled(const struct job_ctx *ctx);
/* Non-zero once the worker is shutting down (see above). */
int job_stopping(const struct job_ctx *ctx);
/* Sleep up to ms, returning early with AT_ECANCELLED when job_cancelled(). */
int job_sleep_ms(struct job_ctx *ctx, int ms) AT_MUST_CHECK;

/* Record metric values for one step (losses, scores) in the metrics table.
 * Synchronous (one round trip on the worker's connection). AT_ESTALE: the
 * job is no longer ours. */
int job_metrics(struct job_ctx *ctx, int64_t step, const char *const *names, const double *values, int n) AT_MUST_CHECK;

/* The result object (takes ownership; replaces an earlier one). */
void job_set_result(struct job_ctx *ctx, json_t *result);
/* The error message stored when the handler fails. */
void job_errorf(struct job_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This failure will not get better by retrying (bad payload, ...). */
void job_no_retry(struct job_ctx *ctx);

/* ---- data-parallel gangs (docs/training.md, sql/016_gang.sql) ---- */

/* This process's rank and the gang's size: a joined rank knows both; the
 * claimant asks the queue (rank 0 of gang_size; 0 of 1 for an ordinary job). */
int job_gang_role(struct job_ctx *ctx, int *rank, int *size) AT_MUST_CHECK;
/* Rank 0: opens the gang with the rendezvous address other ranks connect to. */
int job_gang_open(struct job_ctx *ctx, int size, const char *rendezvous) AT_MUST_CHECK;
/* Extends this rank's gang lease and reads the gang's state. */
int job_gang_poll(struct job_ctx *ctx, enum queue_gang_state *state) AT_MUST_CHECK;
/* The rendezvous address rank 0 published (a joined rank; "" otherwise). */
const char *job_gang_rendezvous(const struct job_ctx *ctx);
/* The queue already gave the job back (a gang not filled in time): the
 * worker reports no outcome for this attempt. */
void job_gang_released(struct job_ctx *ctx);
/* --gang-host, --gang-fill, --gang-timeout. */
const char *job_gang_host(const struct job_ctx *ctx);
int job_gang_timeout_s(const struct job_ctx *ctx);

/* ---- handlers, by family ---- */

/* jobs_promote.c: canary, bake, production or automatic rollback. */
int job_promote(struct job_ctx *ctx);

/* jobs_test.c: TEST ONLY kinds, for the queue's own tests and benchmarks. */
int job_test_noop(struct job_ctx *ctx);
int job_test_sleep(struct job_ctx *ctx);
int job_test_fail(struct job_ctx *ctx);
int job_test_crash(struct job_ctx *ctx);

/* The training stages (docs/training.md), one file each. */
int job_collect(struct job_ctx *ctx);  /* jobs_collect.c */
int job_prepare(struct job_ctx *ctx);  /* jobs_prepare.c */
int job_train(struct job_ctx *ctx);    /* jobs_train.c */
int job_evaluate(struct job_ctx *ctx); /* jobs_evaluate.c */

#endif
