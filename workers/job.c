/*
 * job.c — the job context API handlers use (job.h). Progress is only stored
 * here; the supervisor thread carries it to PostgreSQL with the next
 * heartbeat, so reporting progress never blocks a handler on the network.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "queue.h"
#include "worker.h"

int64_t job_id(const struct job_ctx *ctx) { return ctx->id; }
int job_attempt(const struct job_ctx *ctx) { return ctx->attempt; }
const char *job_kind(const struct job_ctx *ctx) { return ctx->kind; }
const char *job_worker_name(const struct job_ctx *ctx) { return ctx->w->cfg->name; }
/* the slot's thread writes cur_token, and handlers run on it */
int64_t job_token(const struct job_ctx *ctx) { return ctx->slot->cur_token; }
json_t *job_payload(const struct job_ctx *ctx) { return ctx->payload; }

/* The handlers' own connection, apart from the queue's: the queue's session
 * has its planner pinned for the claim (lib/queue.c), and a handler's
 * transaction must never wrap the queue's statements. A connection that
 * failed is returned all the same (its calls fail with the reason) and
 * replaced on the next call. */
/* A session that PostgreSQL ended while its connection idled between jobs (a
 * restart, pg_terminate_backend) still reads CONNECTION_OK: libpq learns it
 * from the next query, which then fails the job that sent it. make chaos found
 * it: after a PostgreSQL restart, each worker's next collect failed with
 * "server closed the connection unexpectedly", one attempt per worker, until
 * the run ran out of attempts. An idle session has nothing to read, so a
 * readable socket (the server's FATAL, its close, an error) means: start a
 * new one. A false alarm (a late NOTICE) costs one reconnect. Only outside a
 * transaction: inside one, dropping the connection would lose its work. */
static int idle_conn_gone(PGconn *c)
{
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		return 0;
	struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
	if (p.fd < 0)
		return 1;
	return poll(&p, 1, 0) != 0;
}

PGconn *job_db(struct job_ctx *ctx)
{
	struct slot *sl = ctx->slot;
	if (sl->hconn && PQstatus(sl->hconn) == CONNECTION_OK && !idle_conn_gone(sl->hconn))
		return sl->hconn;
	PQfinish(sl->hconn);
	const char *ci = ctx->w->cfg->conninfo;
	sl->hconn = PQconnectdb(ci ? ci : "");
	if (PQstatus(sl->hconn) != CONNECTION_OK)
		log_warn("job %" PRId64 ": database connection: %s", ctx->id, PQerrorMessage(sl->hconn));
	return sl->hconn;
}

const char *job_artifacts_uri(const struct job_ctx *ctx) { return ctx->w->cfg->artifacts; }

const char *job_device(const struct job_ctx *ctx) { return ctx->w->cfg->device; }

int job_train_threads(const struct job_ctx *ctx) { return ctx->w->cfg->train_threads; }

const char *job_train_preset(const struct job_ctx *ctx) { return ctx->w->cfg->train_preset; }

int job_scratch_dir(const char *name, char *dir, size_t cap)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(dir, cap, "%s/atelier-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
	if (n < 0 || (size_t)n >= cap || !mkdtemp(dir)) {
		if (cap)
			dir[0] = 0;
		return AT_EIO;
	}
	return 0;
}

void job_progress(struct job_ctx *ctx, double fraction, const char *msg, int eta_s)
{
	pthread_mutex_lock(&ctx->w->mu);
	if (fraction >= 0)
		ctx->progress = fraction > 1 ? 1 : fraction;
	if (msg)
		snprintf(ctx->progress_msg, sizeof ctx->progress_msg, "%s", msg);
	ctx->eta_s = eta_s;
	ctx->progress_dirty = 1;
	pthread_mutex_unlock(&ctx->w->mu);
}

/* ---- gangs ---- */

int job_gang_role(struct job_ctx *ctx, int *rank, int *size)
{
	if (ctx->in_gang) {
		*rank = ctx->gang.rank;
		*size = ctx->gang.size;
		return 0;
	}
	*rank = 0;
	return queue_gang_size(ctx->slot->conn, ctx->id, ctx->slot->cur_token, size);
}

int job_gang_open(struct job_ctx *ctx, int size, const char *rendezvous)
{
	struct queue_job j = {.id = ctx->id, .token = ctx->slot->cur_token};
	int rc = queue_gang_open(ctx->slot->conn, &j, size, rendezvous, ctx->w->cfg->gang_fill_s, ctx->w->cfg->lease_s,
				 &ctx->gang);
	if (rc == 0)
		ctx->in_gang = 1;
	return rc;
}

int job_gang_poll(struct job_ctx *ctx, enum queue_gang_state *state)
{
	if (!ctx->in_gang)
		return AT_EINVAL;
	return queue_gang_poll(ctx->slot->conn, &ctx->gang, ctx->w->cfg->lease_s, state);
}

const char *job_gang_rendezvous(const struct job_ctx *ctx) { return ctx->in_gang ? ctx->gang.rendezvous : ""; }

void job_gang_released(struct job_ctx *ctx) { ctx->outcome_done = 1; }

const char *job_gang_host(const struct job_ctx *ctx) { return ctx->w->cfg->gang_host; }

int job_gang_timeout_s(const struct job_ctx *ctx) { return ctx->w->cfg->gang_timeout_s; }

int job_cancelled(const struct job_ctx *ctx) { return atomic_load(&ctx->stop) != JOB_RUN; }

int job_stopping(const struct job_ctx *ctx) { return atomic_load(&ctx->w->stopping); }

int job_sleep_ms(struct job_ctx *ctx, int ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	int rc = 0;
	pthread_mutex_lock(&ctx->w->mu);
	while (atomic_load(&ctx->stop) == JOB_RUN) {
		if (pthread_cond_timedwait(&ctx->cond, &ctx->w->mu, &until) == ETIMEDOUT)
			break;
	}
	if (atomic_load(&ctx->stop) != JOB_RUN)
		rc = AT_ECANCELLED;
	pthread_mutex_unlock(&ctx->w->mu);
	return rc;
}

int job_metrics(struct job_ctx *ctx, int64_t step, const char *const *names, const double *values, int n)
{
	/* The handler runs on its slot's thread, whose connection is idle meanwhile
	 * (and only that thread writes cur_token). */
	return queue_metrics(ctx->slot->conn, ctx->id, ctx->slot->cur_token, step, names, values, n);
}

void job_set_result(struct job_ctx *ctx, json_t *result)
{
	json_decref(ctx->result);
	ctx->result = result;
}

void job_errorf(struct job_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
	va_end(ap);
}

void job_no_retry(struct job_ctx *ctx) { ctx->no_retry = 1; }

void job_ctx_stop_locked(struct job_ctx *ctx, enum job_stop why)
{
	int expected = JOB_RUN;
	if (atomic_compare_exchange_strong(&ctx->stop, &expected, (int)why))
		pthread_cond_broadcast(&ctx->cond);
}
