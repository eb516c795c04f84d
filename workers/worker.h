/*
 * worker.h — the atelier-worker runtime: job slots (one thread each: the
 * claim loop) and the supervisor thread (heartbeats, timeouts, signals).
 * Internal to workers/.
 *
 * Threads and ownership:
 *   slot threads  --concurrency of them (default 1); each owns its `conn`:
 *                 LISTEN, claim, runs the handler, complete/fail. A slot runs
 *                 one job at a time, so a worker runs up to --concurrency.
 *   supervisor    owns its own connection: heartbeats every slot's job every
 *                 lease/3 (sooner, at most once a second, when progress
 *                 changed), enforces per-attempt timeouts locally, turns
 *                 SIGTERM/SIGINT into a graceful stop and, when the grace
 *                 period runs out, releases the running jobs itself and exits.
 *   `mu` guards each slot's current job (cur, gen, ...) and the progress
 *   fields of the contexts; a job_ctx lives on its slot thread's stack and
 *   the supervisor touches it only under `mu` while the slot's `cur` points
 *   to it.
 *   GPUs: the worker's --gpus are a pool (free_gpus). A slot about to claim
 *   takes every free GPU, offers them in its claim, and gives back at once
 *   what the claimed job does not need; the rest it holds until the job ends.
 *   So jobs running at once never need more GPUs than the worker has.
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
#include "joblog.h"
#include "queue.h"

struct worker_config {
	const char *conninfo; /* NULL: libpq's PG* env */
	const char *name;
	const char **kinds; /* NULL-terminated */
	int gpus;
	int concurrency; /* job slots: jobs run at once (>= 1) */
	int lease_s;
	double poll_s;  /* safety-net poll (and reap) interval when idle */
	double grace_s; /* on SIGTERM/SIGINT: how long the running job may take to finish */
	int reap;       /* run atelier_reap() on idle ticks */
	/* what the handlers read (job.h's accessors) */
	const char *artifacts;    /* artifact store URI */
	const char *device;       /* cpu | cuda | auto; NULL = auto */
	int train_threads;        /* libtorch threads for train; 0 = libtorch's choice */
	const char *train_preset; /* gpu | cpu forces train's preset; NULL = by device */
	const char *gang_host;    /* data-parallel training: the address other ranks reach us at */
	int gang_fill_s;          /* a gang not filled in this long gives its claims back */
	int gang_timeout_s;       /* a collective waiting this long for a rank fails */
};

/* Why a handler should stop (the first reason wins). */
enum job_stop {
	JOB_RUN = 0,
	JOB_STOP_CANCEL,  /* cancel requested (seen in a heartbeat) */
	JOB_STOP_TIMEOUT, /* the attempt ran past the stage's timeout */
	JOB_STOP_LOST,    /* the lease is no longer ours (heartbeat said stale) */
};

struct worker;
struct slot;

struct job_ctx {
	struct worker *w;
	struct slot *slot;
	int64_t id;
	int attempt;
	const char *kind;
	json_t *payload; /* owned */
	json_t *result;  /* owned; NULL = {} */
	char error[1024];
	int no_retry;
	char cache_key[65];     /* the step cache's key ("" when not cacheable) */
	struct queue_gang gang; /* in_gang: this rank's hold on the job's gang */
	int in_gang;            /* 1 once rank 0 opened the gang, or from the start for a joined rank */
	int outcome_done;       /* the queue already settled the job (a gang released): report nothing */
	int64_t cached_from;    /* the job whose result this one reused; 0 = ran */
	atomic_int stop;        /* enum job_stop */
	pthread_cond_t cond;    /* signalled (under w->mu) when stop is set */
	/* progress, under w->mu */
	double progress;
	char progress_msg[256];
	int eta_s;
	int progress_dirty;
};

struct slot {
	struct worker *w;
	int index;
	PGconn *conn;  /* the slot thread's queue connection (lib/queue.c only) */
	PGconn *hconn; /* the handlers' (job_db), opened on first use */
	int evfd;      /* -> the slot: wake up (shutdown, GPUs given back) */
	pthread_t thread;
	int started;
	int held_gpus;     /* slot thread only: GPUs taken from the pool */
	struct joblog log; /* the running job's log lines, on their way to job_logs */
	int log_inited;
	/* under w->mu */
	struct job_ctx *cur; /* the running job */
	int64_t cur_token;
	int cur_timeout_s;
	uint64_t cur_started_ms;
	uint64_t gen; /* bumped at every job start and end */
	/* the supervisor's own */
	uint64_t sup_gen;    /* job generation last_hb_ms describes */
	uint64_t last_hb_ms; /* last heartbeat (or the job's start) */
};

struct worker {
	const struct worker_config *cfg;
	pthread_mutex_t mu;
	struct slot *slots;
	int nslots;
	atomic_int stopping;
	atomic_int free_gpus; /* the GPU pool (see above) */
	int sup_evfd;         /* -> supervisor: quit */
	atomic_int quit;
	/* counters for the exit line */
	atomic_long n_run, n_ok, n_failed, n_released, n_lost;
};

/* Runs until SIGTERM/SIGINT; returns the process exit status. */
int worker_run(const struct worker_config *cfg);

/* Set a stop reason on ctx (w->mu held) and wake a sleeping handler. */
void job_ctx_stop_locked(struct job_ctx *ctx, enum job_stop why);
uint64_t worker_now_ms(void);

#endif
