/*
 * joblog.h — ship the lines a job logs to PostgreSQL (job_logs, sql/009).
 *
 * The slot thread running a job taps its own log lines (log.h's thread tap)
 * into the slot's joblog: an in-memory batch, appended under a mutex, never
 * any I/O on the job's thread. The supervisor thread sends due batches (a
 * second old, or 100 lines: the tap wakes it) over its own connection, one
 * statement per batch; the slot thread sends what is left when the job
 * returns, before it reports the outcome, so a finished job's log is whole.
 * One batch per slot is on the wire at a time (send_mu), so the database
 * numbers lines in the order they were logged. A batch holds at most
 * JOBLOG_MAX_PENDING lines; lines beyond that (a job logging faster than the
 * database takes them) are counted and reported as dropped.
 */
#ifndef ATELIER_WORKERS_JOBLOG_H
#define ATELIER_WORKERS_JOBLOG_H

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>

#define JOBLOG_FLUSH_MS 1000
#define JOBLOG_FLUSH_LINES 100
#define JOBLOG_MAX_PENDING 1000

struct joblog {
	pthread_mutex_t mu;      /* guards the fields below */
	pthread_mutex_t send_mu; /* held while a batch is sent */
	int64_t job;             /* the job being tapped; 0: none */
	json_t *pending;         /* [[epoch_ms, level, text], ...] */
	long long dropped;       /* lines not kept since the last batch */
	uint64_t first_ms;       /* when the oldest pending line came (monotonic) */
	int wake_fd;             /* eventfd of the thread that sends due batches */
	int woken;               /* the wake for this batch was sent */
};

int joblog_init(struct joblog *l, int wake_fd);
void joblog_destroy(struct joblog *l);
/* On the job's thread: start tapping its lines for job. */
void joblog_begin(struct joblog *l, int64_t job);
/* On the job's thread: stop tapping, send what is pending over conn (NULL
 * or broken: the lines are lost, and said so on stderr). */
void joblog_end(struct joblog *l, PGconn *conn);
/* Whether a batch is due (cheap: no I/O). */
int joblog_due(struct joblog *l);
/* On the sending thread: send the batch if it is due (or force). Returns
 * 0, or a negative AT_E* when the database refused it (the batch is lost:
 * a log is not worth a retry loop next to the job). */
int joblog_flush(struct joblog *l, PGconn *conn, int force);

#endif
