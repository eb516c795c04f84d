/*
 * worker.h — the atelier-worker runtime: the claim loop (main thread) and the
 * supervisor thread (heartbeats, timeouts, signals). Internal to workers/.
 *
 * Threads and ownership:
 *   main thread   owns `conn`: LISTEN, claim, runs the handler, complete/fail.
 *   supervisor    owns its own connection: heartbeats every lease/3 (sooner,
 *                 at most once a second, when progress changed), enforces the
 *                 per-attempt timeout locally, turns SIGTERM/SIGINT into a
 *                 graceful stop and, when the grace period runs out, releases
 *                 the job itself and exits the process.
 *   `mu` guards the current job (cur, gen) and the progress fields of the
 *   context; a job_ctx lives on the main thread's stack and the supervisor
 *   touches it only under `mu` while `cur` points to it.
 */
#ifndef ATELIER_WORKERS_WORKER_H
#define ATELIER_WORKERS_WORKER_H

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "err.h"
#include "job.h"

struct worker_config {
	const char *conninfo; /* NULL: libpq's PG* env */
	const char *name;
	const char **kinds; /* NULL-terminated */
	int gpus;
	int lease_s;
	double poll_s;  /* safety-net poll (and reap) interval when idle */
	double grace_s; /* on SIGTERM/SIGINT: how long the running job may take to finish */
	int reap;       /* run atelier_reap() on idle ticks */
};

/* Why a handler should stop (the first reason wins). */
enum job_stop {
	JOB_RUN = 0,
	JOB_STOP_CANCEL,   /* cancel requested (seen in a heartbeat) */
	JOB_STOP_TIMEOUT,  /* the attempt ran past the stage's timeout */
	JOB_STOP_LOST,     /* the lease is no longer ours (heartbeat said stale) */
};

struct worker;

struct job_ctx {
	struct worker *w;
	int64_t id;
	int attempt;
	const char *kind;
	json_t *payload; /* owned */
	json_t *result;  /* owned; NULL = {} */
	char error[1024];
	int no_retry;
	atomic_int stop; /* enum job_stop */
	pthread_cond_t cond; /* signalled (under w->mu) when stop is set */
	/* progress, under w->mu */
	double progress;
	char progress_msg[256];
	int eta_s;
	int progress_dirty;
};

struct worker {
	const struct worker_config *cfg;
	PGconn *conn; /* main thread's */
	pthread_mutex_t mu;
	struct job_ctx *cur; /* the running job, under mu */
	int64_t cur_token;
	int cur_timeout_s;
	uint64_t cur_started_ms;
	uint64_t gen; /* bumped at every job start and end */
	atomic_int stopping;
	int main_evfd; /* supervisor -> main: wake up (stop) */
	int sup_evfd;  /* main -> supervisor: the job changed, or quit */
	atomic_int quit;
	/* counters for the exit line */
	long n_run, n_ok, n_failed, n_released, n_lost;
};

/* Runs until SIGTERM/SIGINT; returns the process exit status. */
int worker_run(const struct worker_config *cfg);

/* Set a stop reason on ctx (w->mu held) and wake a sleeping handler. */
void job_ctx_stop_locked(struct job_ctx *ctx, enum job_stop why);
uint64_t worker_now_ms(void);

#endif
