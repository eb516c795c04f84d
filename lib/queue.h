/*
 * queue.h — the worker side of the PostgreSQL job queue, over blocking libpq.
 *
 * The queue's semantics live in sql/002_queue.sql (atelier_claim,
 * atelier_heartbeat, ...); this is a thin client: one prepared statement per
 * function, one round trip per call. atelierd calls the same SQL functions
 * through its async pool. See docs/queue.md for the contract.
 *
 * Every function returns 0 or a negative AT_E* code:
 *   AT_ESTALE        the (id, token) pair no longer owns a running job: the
 *                    lease expired and the job was reaped or re-claimed, or it
 *                    was finished by someone else. The caller must drop it.
 *   AT_ENOTFOUND     queue_claim: nothing claimable right now.
 *   AT_EDB           PostgreSQL returned an error (logged).
 *   AT_EUNAVAILABLE  the connection is broken; reconnect (queue_connect).
 *
 * A connection is used by one thread at a time. queue_prepare() must run once
 * per connection before the other calls (queue_connect does it).
 */
#ifndef ATELIER_QUEUE_H
#define ATELIER_QUEUE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "err.h"

/* A claimed job. Strings are owned by the struct (queue_job_clear frees them). */
struct queue_job {
	int64_t id;
	int64_t token;  /* owner token of this attempt */
	int64_t run_id; /* 0: not part of a run */
	int attempts;   /* including this one */
	int max_attempts;
	int needs_gpu;
	int timeout_s; /* 0: none */
	char *kind;
	char *stage;   /* NULL: none */
	char *payload; /* JSON text, never NULL */
};

void queue_job_clear(struct queue_job *job);

/* What to enqueue; zero-initialise and set what you need (kind is required). */
struct queue_new_job {
	const char *kind;
	const char *payload; /* JSON text; NULL = {} */
	int priority;        /* lower runs first */
	int64_t run_id;      /* 0 = none */
	const char *stage;
	int max_attempts; /* 0 = default (3) */
	int timeout_s;    /* 0 = none */
	int needs_gpu;
	double delay_s;   /* run_after = now() + delay_s */
	double backoff_s; /* 0 = default (1 s) */
};

/* Connect (libpq URL or key=value; NULL/"" = PG* env) and prepare the
 * statements. On failure *out is NULL and the reason is logged.
 * queue_prepare also pins the session's planner to ordered index scans
 * (enable_bitmapscan and enable_sort off, and so jit and parallel workers
 * off: queue.c says why), so keep other work off a queue connection. */
int queue_connect(const char *conninfo, PGconn **out) AT_MUST_CHECK;
int queue_prepare(PGconn *conn) AT_MUST_CHECK;

int queue_enqueue(PGconn *conn, const struct queue_new_job *job, int64_t *id_out) AT_MUST_CHECK;

/* kinds: NULL-terminated list. AT_ENOTFOUND when nothing is claimable. On
 * success *out is filled (clear it with queue_job_clear). */
int queue_claim(PGconn *conn, const char *worker, const char *const *kinds, int gpus, int lease_s,
		struct queue_job *out) AT_MUST_CHECK;

/* Extend the lease by lease_s and record progress: fraction < 0, msg NULL and
 * eta_s < 0 leave the old values. *cancel_out (may be NULL) is set to 1 when
 * a cancel was requested. AT_ESTALE: the job is no longer ours. */
int queue_heartbeat(PGconn *conn, int64_t id, int64_t token, double fraction, const char *msg, int eta_s, int lease_s,
		    int *cancel_out) AT_MUST_CHECK;

/* result_json: NULL = {}. */
int queue_complete(PGconn *conn, int64_t id, int64_t token, const char *result_json) AT_MUST_CHECK;

/* The hot path: complete the job `done` (its id, token and run_id) and claim
 * the next in one round trip and one transaction. Returns 0, or AT_ESTALE
 * when the completion was rejected; in both cases *next holds the claimed
 * job, or next->id == 0 when nothing was claimable (clear it with
 * queue_job_clear either way). Other errors: nothing was completed or
 * claimed. next may not be done. */
int queue_complete_claim(PGconn *conn, const struct queue_job *done, const char *result_json, const char *worker,
			 const char *const *kinds, int gpus, int lease_s, struct queue_job *next) AT_MUST_CHECK;

/* A failed attempt. state_out (may be NULL, 16 bytes) receives the job's new
 * state: "queued" (will be retried after a backoff), "failed" or "cancelled". */
int queue_fail(PGconn *conn, int64_t id, int64_t token, const char *error, int retryable,
	       char *state_out) AT_MUST_CHECK;

/* Give the job back to the queue at once, not counting the attempt. */
int queue_release(PGconn *conn, int64_t id, int64_t token) AT_MUST_CHECK;

/* Record metric values for one step of a running job (n pairs). */
int queue_metrics(PGconn *conn, int64_t id, int64_t token, int64_t step, const char *const *names, const double *values,
		  int n) AT_MUST_CHECK;

/* Re-queue or fail expired leases and per-attempt timeouts; *count (may be NULL) = jobs touched. */
int queue_reap(PGconn *conn, int *count) AT_MUST_CHECK;

/* Request cancel. state_out (may be NULL, 16 bytes): the job's state afterwards. */
int queue_cancel(PGconn *conn, int64_t id, char *state_out) AT_MUST_CHECK;

/* Upsert this worker in the workers table (last_seen = now()). */
int queue_worker_seen(PGconn *conn, const char *worker, const char *const *kinds, int gpus) AT_MUST_CHECK;

/* ---- waiting for work ---- */

/* LISTEN atelier_jobs on this connection. */
int queue_listen(PGconn *conn) AT_MUST_CHECK;

/* Wait until a notification arrives on conn (returns 1; every pending
 * notification is consumed), timeout_ms passes (returns 0; < 0 waits forever),
 * or wake_fd (if >= 0) becomes readable (returns 2; the fd is not drained).
 * Notifications that libpq already buffered while running an earlier query
 * count, so "claim found nothing, then wait" never misses one. */
int queue_listen_wait(PGconn *conn, int timeout_ms, int wake_fd) AT_MUST_CHECK;

/* ---- gangs: one job, several ranks (sql/016_gang.sql; docs/queue.md "Gang claims") ---- */

/* One rank's hold on a gang. */
struct queue_gang {
	int64_t job_id;
	int64_t gang_token;   /* rank 0's owner token of the job: names this attempt's gang */
	int64_t member_token; /* this rank's own (rank 0: the gang token) */
	int rank, size;
	char rendezvous[304]; /* host:port of rank 0's store */
};

enum queue_gang_state {
	QUEUE_GANG_FILLING, /* ranks still missing */
	QUEUE_GANG_FORMED,  /* every rank claimed: start */
	QUEUE_GANG_RELEASED,
	QUEUE_GANG_FAILED,
	QUEUE_GANG_DONE, /* the job succeeded */
	QUEUE_GANG_GONE, /* replaced by a later attempt's gang, or this rank is not in it */
};
const char *queue_gang_state_name(enum queue_gang_state s);

/* The ranks the claimed job (id, token) wants: 1 = an ordinary job. AT_ESTALE: not ours. */
int queue_gang_size(PGconn *conn, int64_t id, int64_t token, int *size) AT_MUST_CHECK;
/* Rank 0 (the job's claimant): opens this attempt's gang of size ranks with
 * its store's address, waking idle workers. AT_ESTALE: the job is not ours. */
int queue_gang_open(PGconn *conn, const struct queue_job *job, int size, const char *rendezvous, int fill_s,
		    int lease_s, struct queue_gang *out) AT_MUST_CHECK;
/* An idle worker joins the oldest filling gang it can serve (kinds, gpus; one
 * rank per worker). AT_ENOTFOUND when none; else *job (the gang's job, token =
 * the member token; clear it with queue_job_clear) and *out. */
int queue_gang_join(PGconn *conn, const char *worker, const char *const *kinds, int gpus, int lease_s,
		    struct queue_job *job, struct queue_gang *out) AT_MUST_CHECK;
/* Extends this rank's lease and says the gang's state; a filling gang past its
 * deadline is released here (the job requeued, its attempt not counted). */
int queue_gang_poll(PGconn *conn, const struct queue_gang *g, int lease_s, enum queue_gang_state *state) AT_MUST_CHECK;

#endif
