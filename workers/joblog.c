/*
 * joblog.c — a job's log lines into PostgreSQL (see joblog.h).
 */
#include "joblog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "worker.h"

int joblog_init(struct joblog *l, int wake_fd)
{
	memset(l, 0, sizeof *l);
	l->wake_fd = wake_fd;
	if (pthread_mutex_init(&l->mu, NULL) != 0)
		return AT_ENOMEM;
	if (pthread_mutex_init(&l->send_mu, NULL) != 0) {
		pthread_mutex_destroy(&l->mu);
		return AT_ENOMEM;
	}
	return 0;
}

void joblog_destroy(struct joblog *l)
{
	json_decref(l->pending);
	l->pending = NULL;
	pthread_mutex_destroy(&l->send_mu);
	pthread_mutex_destroy(&l->mu);
}

/* The tap (log.h): runs on the job's thread for each line it logs. */
static void joblog_tap(void *arg, long long epoch_ms, enum log_level level, const char *msg)
{
	struct joblog *l = arg;
	int wake = 0;
	pthread_mutex_lock(&l->mu);
	if (!l->pending) {
		l->pending = json_array();
		l->first_ms = worker_now_ms();
		l->woken = 0;
	}
	if (!l->pending || json_array_size(l->pending) >= JOBLOG_MAX_PENDING ||
	    json_array_append_new(l->pending, json_pack("[Iss]", (json_int_t)epoch_ms, log_level_name(level), msg)) <
		    0) {
		l->dropped++;
	} else if (json_array_size(l->pending) >= JOBLOG_FLUSH_LINES && !l->woken) {
		wake = l->woken = 1;
	}
	pthread_mutex_unlock(&l->mu);
	if (wake) {
		uint64_t one = 1;
		if (write(l->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN) {
			/* the sender still looks within a second */
		}
	}
}

void joblog_begin(struct joblog *l, int64_t job)
{
	pthread_mutex_lock(&l->mu);
	l->job = job;
	pthread_mutex_unlock(&l->mu);
	log_set_thread_tap(joblog_tap, l);
}

/* l->mu held */
static int due_locked(struct joblog *l, int force)
{
	size_t n = l->pending ? json_array_size(l->pending) : 0;
	return l->job > 0 && (n > 0 || l->dropped > 0) &&
	       (force || n >= JOBLOG_FLUSH_LINES || worker_now_ms() >= l->first_ms + JOBLOG_FLUSH_MS);
}

int joblog_due(struct joblog *l)
{
	pthread_mutex_lock(&l->mu);
	int due = due_locked(l, 0);
	pthread_mutex_unlock(&l->mu);
	return due;
}

int joblog_flush(struct joblog *l, PGconn *conn, int force)
{
	pthread_mutex_lock(&l->send_mu);
	pthread_mutex_lock(&l->mu);
	json_t *batch = NULL;
	long long dropped = 0;
	int64_t job = l->job;
	size_t n = l->pending ? json_array_size(l->pending) : 0;
	if (due_locked(l, force)) {
		batch = l->pending ? l->pending : json_array();
		dropped = l->dropped;
		l->pending = NULL;
		l->dropped = 0;
	}
	pthread_mutex_unlock(&l->mu);
	int rc = 0;
	if (batch) {
		char *text = json_dumps(batch, JSON_COMPACT);
		char ids[24], drops[24];
		snprintf(ids, sizeof ids, "%" PRId64, job);
		snprintf(drops, sizeof drops, "%lld", dropped);
		const char *vals[3] = {ids, text, drops};
		PGresult *r = text && conn ? PQexecParams(conn, "SELECT atelier_job_log_append($1, $2, $3)", 3, NULL,
							  vals, NULL, NULL, 0)
					   : NULL;
		if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
			/* Not through log_*: a tapped thread would feed this line back in. */
			fprintf(stderr, "joblog: %zu line(s) of job %" PRId64 " not stored: %s", n, job,
				r      ? PQresultErrorMessage(r)
				: conn ? "out of memory\n"
				       : "no database connection\n");
			rc = r ? AT_EDB : AT_EUNAVAILABLE;
		}
		PQclear(r);
		free(text);
		json_decref(batch);
	}
	pthread_mutex_unlock(&l->send_mu);
	return rc;
}

void joblog_end(struct joblog *l, PGconn *conn)
{
	log_set_thread_tap(NULL, NULL);
	if (joblog_flush(l, conn && PQstatus(conn) == CONNECTION_OK ? conn : NULL, 1) < 0) {
		/* said on stderr; the outcome report goes on regardless */
	}
	pthread_mutex_lock(&l->mu);
	l->job = 0;
	json_decref(l->pending); /* nothing: the flush took it; defensive for a failed json_array */
	l->pending = NULL;
	l->dropped = 0;
	pthread_mutex_unlock(&l->mu);
}
