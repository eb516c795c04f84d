/*
 * queue.c — see queue.h. Each SQL function of the queue contract gets one
 * prepared statement (named "q_<function>"), prepared once per connection by
 * queue_prepare(); every call is then a single PQexecPrepared round trip with
 * text parameters. Nothing here keeps state besides what libpq keeps on the
 * connection.
 */
#include "queue.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

/* The error of a call that failed (res: its error result, or NULL): is the
 * connection itself gone or unusable? It is when libpq says so, when the
 * server ended the session (a FATAL or PANIC answer: shutdown, restart,
 * pg_terminate_backend — libpq only marks the connection bad once it has
 * read on), and when a pipeline could not be left (answers still owed: no
 * later call can run on it). The caller then reconnects. */
static int conn_error_res(PGconn *conn, const PGresult *res)
{
	if (PQstatus(conn) == CONNECTION_BAD || PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		return AT_EUNAVAILABLE;
	const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
	if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
		return AT_EUNAVAILABLE;
	return AT_EDB;
}

static int conn_error(PGconn *conn) { return conn_error_res(conn, NULL); }

/* ---- statements ---- */

static const struct {
	const char *name;
	const char *sql;
	int nparams;
} stmts[] = {
	{"q_enqueue",
	 "SELECT atelier_enqueue($1, $2::jsonb, $3::int, $4::bigint, $5, $6::int, $7::int, $8::int,"
	 " now() + make_interval(secs => $9::float8), $10::real)",
	 10},
	/* The claim (the only one: sql/006_queue_hot_path.sql says why it is not a
	 * PL/pgSQL function). The first claimable job in (priority, id) order among
	 * kinds, for a worker with $3 GPUs; SKIP LOCKED lets concurrent claimers pass
	 * over each other's rows instead of queueing behind them; the scan starts
	 * at the queue floor (sql/006_queue_hot_path.sql), past the dead index
	 * entries that earlier claims left. A job of a run tells the run's listeners
	 * it started. */
	{"q_claim",
	 "UPDATE jobs j"
	 " SET state = 'running', attempts = j.attempts + 1, owner_token = nextval('jobs_owner_token_seq'),"
	 " lease_expires_at = now() + make_interval(secs => $4::int), worker = $1,"
	 " started_at = clock_timestamp(), finished_at = NULL, progress = 0, progress_msg = NULL, eta_seconds = NULL"
	 " WHERE j.id = (SELECT q.id FROM jobs q"
	 " WHERE q.state = 'queued' AND q.kind = ANY ($2::text[]) AND q.run_after <= now()"
	 " AND q.needs_gpu <= $3::int AND (q.priority, q.id) >= (SELECT f.priority, f.id FROM queue_floor f)"
	 " ORDER BY q.priority, q.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
	 " RETURNING j.id, j.owner_token, coalesce(j.run_id, 0), j.attempts, j.max_attempts, j.needs_gpu,"
	 " coalesce(j.timeout_s, 0), j.kind, j.stage, j.payload::text,"
	 " CASE WHEN j.run_id IS NOT NULL THEN atelier_notify_run(j.run_id, j.id, 'running') END",
	 4},
	{"q_floor_raise", "SELECT atelier_queue_floor_raise()", 0},
	{"q_heartbeat", "SELECT atelier_heartbeat($1::bigint, $2::bigint, $3::real, $4, $5::int, $6::int)", 6},
	{"q_complete", "SELECT atelier_complete($1::bigint, $2::bigint, $3::jsonb)", 3},
	/* atelier_complete's UPDATE, bare: a job outside any run needs nothing
	 * else (no notification, no run to advance), and the PL/pgSQL call
	 * around it was a fifth of the server's time per job. test_queue.c
	 * checks that both leave the same row. */
	{"q_complete_bare",
	 "UPDATE jobs SET state = 'succeeded', result = coalesce($3::jsonb, '{}'), error = NULL,"
	 " progress = 1, eta_seconds = 0, finished_at = clock_timestamp(), lease_expires_at = NULL,"
	 " owner_token = NULL WHERE id = $1::bigint AND owner_token = $2::bigint AND run_id IS NULL"
	 " RETURNING true",
	 3},
	{"q_fail", "SELECT atelier_fail($1::bigint, $2::bigint, $3, $4::boolean)", 4},
	{"q_release", "SELECT atelier_release($1::bigint, $2::bigint)", 2},
	{"q_metrics", "SELECT atelier_metrics($1::bigint, $2::bigint, $3::bigint, $4::text[], $5::float8[])", 5},
	{"q_reap", "SELECT atelier_reap()", 0},
	{"q_cancel", "SELECT atelier_cancel_job($1::bigint)", 1},
	{"q_worker_seen", "SELECT atelier_worker_seen($1, $2::text[], $3::int)", 3},
	/* gangs (sql/016_gang.sql) */
	{"q_gang_size", "SELECT gang_size FROM jobs WHERE id = $1::bigint AND owner_token = $2::bigint", 2},
	{"q_gang_open", "SELECT atelier_gang_open($1::bigint, $2::bigint, $3, $4::int, $5::int)", 5},
	{"q_gang_join",
	 "SELECT id, owner_token, coalesce(run_id, 0), attempts, max_attempts, needs_gpu, coalesce(timeout_s, 0),"
	 " kind, stage, payload::text, gang_token, rank, size, rendezvous"
	 " FROM atelier_gang_join($1, $2::text[], $3::int, $4::int)",
	 4},
	{"q_gang_poll", "SELECT atelier_gang_poll($1::bigint, $2::bigint, $3::int, $4::bigint, $5::int)", 5},
};

/* The claim must walk jobs_claimable in (priority, id) order from the
 * floor and stop at the first job it can lock. When the planner believes few
 * rows are queued (no statistics yet, or an ANALYZE that ran while the queue
 * was nearly empty) it picks a bitmap scan of every queued row plus a sort
 * instead, and a cached plan keeps doing that per claim however deep the
 * queue gets: 230 jobs/s at 11,000 queued, measured (test_queue.py, the
 * terminated-backend test, before this). Turning those off works by adding a
 * huge cost to such plans, and a plan that costly would be JIT-compiled (the
 * enqueue trigger's sort of its transition table took 170 ms so) or given
 * parallel workers: both off too; the queue's statements touch a few rows.
 * A queue connection runs only the statements here, so these settings cost
 * nothing elsewhere (job handlers get their own connection: job_db). */
static const char session_settings[] = "SET enable_bitmapscan = off; SET enable_sort = off; SET jit = off;"
				       " SET max_parallel_workers_per_gather = 0";

int queue_prepare(PGconn *conn)
{
	PGresult *set = PQexec(conn, session_settings);
	int set_ok = PQresultStatus(set) == PGRES_COMMAND_OK;
	if (!set_ok)
		log_error("queue: %s: %s", session_settings, PQresultErrorMessage(set));
	PQclear(set);
	if (!set_ok)
		return conn_error(conn);
	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
		PGresult *res = PQprepare(conn, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
		int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			log_error("queue: prepare %s: %s", stmts[i].name, PQresultErrorMessage(res));
		PQclear(res);
		if (!ok)
			return conn_error(conn);
	}
	return 0;
}

int queue_connect(const char *conninfo, PGconn **out)
{
	*out = NULL;
	PGconn *conn = PQconnectdb(conninfo ? conninfo : "");
	if (PQstatus(conn) != CONNECTION_OK) {
		log_error("queue: connect: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return AT_EUNAVAILABLE;
	}
	int rc = queue_prepare(conn);
	if (rc < 0) {
		PQfinish(conn);
		return rc;
	}
	*out = conn;
	return 0;
}

/* Run a prepared statement expecting tuples; on success *res_out holds the
 * result (the caller clears it). */
static int exec(PGconn *conn, const char *stmt, int n, const char *const *values, PGresult **res_out)
{
	*res_out = NULL;
	PGresult *res = PQexecPrepared(conn, stmt, n, values, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		int rc = conn_error_res(conn, res);
		log_error("queue: %s: %s", stmt, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return rc;
	}
	*res_out = res;
	return 0;
}

/* The single value of a one-row, one-column result; NULL when SQL NULL. */
static const char *scalar(PGresult *res)
{
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
		return NULL;
	return PQgetvalue(res, 0, 0);
}

/* A text[] literal: {"a","b"} with " and \ escaped. */
static int array_literal(struct at_buf *b, const char *const *items, int n)
{
	int rc = at_buf_addstr(b, "{");
	for (int i = 0; rc == 0 && (n < 0 ? items[i] != NULL : i < n); i++) {
		rc = at_buf_addstr(b, i ? ",\"" : "\"");
		for (const char *p = items[i]; rc == 0 && *p; p++) {
			if (*p == '"' || *p == '\\')
				rc = at_buf_add(b, "\\", 1);
			if (rc == 0)
				rc = at_buf_add(b, p, 1);
		}
		if (rc == 0)
			rc = at_buf_addstr(b, "\"");
	}
	if (rc == 0)
		rc = at_buf_addstr(b, "}");
	return rc;
}

static char *dup_or_null(PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : strdup(PQgetvalue(res, 0, col));
}

/* ---- the contract ---- */

int queue_enqueue(PGconn *conn, const struct queue_new_job *job, int64_t *id_out)
{
	char prio[16], run[24], maxa[16], tmo[16], gpu[16], delay[32], backoff[32];
	if (!job->kind)
		return AT_EINVAL;
	snprintf(prio, sizeof prio, "%d", job->priority);
	snprintf(run, sizeof run, "%" PRId64, job->run_id);
	snprintf(maxa, sizeof maxa, "%d", job->max_attempts > 0 ? job->max_attempts : 3);
	snprintf(tmo, sizeof tmo, "%d", job->timeout_s);
	snprintf(gpu, sizeof gpu, "%d", job->needs_gpu);
	snprintf(delay, sizeof delay, "%.6f", job->delay_s);
	snprintf(backoff, sizeof backoff, "%.6f", job->backoff_s > 0 ? job->backoff_s : 1.0);
	const char *v[10] = {job->kind,
			     job->payload ? job->payload : "{}",
			     prio,
			     job->run_id ? run : NULL,
			     job->stage,
			     maxa,
			     job->timeout_s > 0 ? tmo : NULL,
			     gpu,
			     delay,
			     backoff};
	PGresult *res;
	int rc = exec(conn, "q_enqueue", 10, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	if (id_out)
		*id_out = s ? strtoll(s, NULL, 10) : 0;
	PQclear(res);
	return 0;
}

void queue_job_clear(struct queue_job *job)
{
	free(job->kind);
	free(job->stage);
	free(job->payload);
	memset(job, 0, sizeof *job);
}

/* Fill *out from the 10 job columns starting at col (id is never NULL there). */
static int job_from_row(PGresult *res, int col, struct queue_job *out)
{
	out->id = strtoll(PQgetvalue(res, 0, col), NULL, 10);
	out->token = strtoll(PQgetvalue(res, 0, col + 1), NULL, 10);
	out->run_id = strtoll(PQgetvalue(res, 0, col + 2), NULL, 10);
	out->attempts = (int)strtol(PQgetvalue(res, 0, col + 3), NULL, 10);
	out->max_attempts = (int)strtol(PQgetvalue(res, 0, col + 4), NULL, 10);
	out->needs_gpu = (int)strtol(PQgetvalue(res, 0, col + 5), NULL, 10);
	out->timeout_s = (int)strtol(PQgetvalue(res, 0, col + 6), NULL, 10);
	out->kind = dup_or_null(res, col + 7);
	out->stage = dup_or_null(res, col + 8);
	out->payload = dup_or_null(res, col + 9);
	if (!out->kind || !out->payload || (!out->stage && !PQgetisnull(res, 0, col + 8))) {
		/* The job is ours now but we cannot hold it: its lease will expire. */
		queue_job_clear(out);
		return AT_ENOMEM;
	}
	return 0;
}

/* The claim's four text parameters ($1 worker, $2 kinds, $3 gpus, $4 lease),
 * shared by queue_claim and queue_complete_claim. */
struct claim_params {
	char gpus[16], lease[16];
	struct at_buf kinds;
	const char *v[4];
};

static int claim_params_init(struct claim_params *p, const char *worker, const char *const *kinds, int gpus,
			     int lease_s)
{
	at_buf_init(&p->kinds, 64 * 1024);
	int rc = array_literal(&p->kinds, kinds, -1);
	snprintf(p->gpus, sizeof p->gpus, "%d", gpus);
	snprintf(p->lease, sizeof p->lease, "%d", lease_s);
	p->v[0] = worker;
	p->v[1] = p->kinds.data;
	p->v[2] = p->gpus;
	p->v[3] = p->lease;
	return rc;
}

int queue_claim(PGconn *conn, const char *worker, const char *const *kinds, int gpus, int lease_s,
		struct queue_job *out)
{
	memset(out, 0, sizeof *out);
	struct claim_params cp;
	int rc = claim_params_init(&cp, worker, kinds, gpus, lease_s);
	if (rc < 0)
		goto out;
	PGresult *res = NULL;
	rc = exec(conn, "q_claim", 4, cp.v, &res);
	if (rc < 0)
		goto out;
	rc = PQntuples(res) == 0 ? AT_ENOTFOUND : job_from_row(res, 0, out);
	PQclear(res);
out:
	at_buf_free(&cp.kinds);
	return rc;
}

/* Every RAISE_EVERY-th completion (by job id, so without any state here) also
 * raises the queue floor, in the same round trip. */
#define RAISE_EVERY 16

/* Complete and claim are pipelined: the queries and a Sync go out in one
 * write, PostgreSQL runs them as one implicit transaction (one commit), and
 * the answers come back together. If one fails, none takes effect (the rest
 * answer PGRES_PIPELINE_ABORTED). */
int queue_complete_claim(PGconn *conn, const struct queue_job *done, const char *result_json, const char *worker,
			 const char *const *kinds, int gpus, int lease_s, struct queue_job *next)
{
	int64_t id = done->id, token = done->token;
	memset(next, 0, sizeof *next);
	const char *const names[3] = {done->run_id ? "q_complete" : "q_complete_bare", "q_claim", "q_floor_raise"};
	int nq = id % RAISE_EVERY == 0 ? 3 : 2;
	char i[24], t[24];
	PGresult *res[3] = {NULL, NULL, NULL};
	const PGresult *failed = NULL; /* the first error answer */
	struct claim_params cp;
	int rc = claim_params_init(&cp, worker, kinds, gpus, lease_s);
	if (rc < 0)
		goto out;
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	const char *vc[3] = {i, t, result_json ? result_json : "{}"};
	if (!PQenterPipelineMode(conn) || !PQsendQueryPrepared(conn, names[0], 3, vc, NULL, NULL, 0) ||
	    !PQsendQueryPrepared(conn, names[1], 4, cp.v, NULL, NULL, 0) ||
	    (nq == 3 && !PQsendQueryPrepared(conn, names[2], 0, NULL, NULL, NULL, 0)) || !PQpipelineSync(conn)) {
		log_error("queue: complete+claim: %s", PQerrorMessage(conn));
		rc = AT_EDB;
		goto exit_pipeline;
	}
	/* Each query's answer is a result then NULL; the Sync's is one result. */
	for (int q = 0; q < nq; q++) {
		res[q] = PQgetResult(conn);
		if (!res[q]) {
			log_error("queue: %s: %s", names[q], PQerrorMessage(conn));
			rc = AT_EDB;
			goto exit_pipeline;
		}
		PQclear(PQgetResult(conn));
		if (PQresultStatus(res[q]) != PGRES_TUPLES_OK && rc == 0) {
			log_error("queue: %s: %s", names[q], PQresultErrorMessage(res[q]));
			rc = AT_EDB;
			failed = res[q];
		}
	}
	PGresult *sync = PQgetResult(conn);
	if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC && rc == 0) {
		log_error("queue: complete+claim: no sync: %s", PQerrorMessage(conn));
		rc = AT_EDB;
	}
	PQclear(sync);
exit_pipeline:
	if (!PQexitPipelineMode(conn) && rc == 0) {
		log_error("queue: complete+claim: %s", PQerrorMessage(conn));
		rc = AT_EDB;
	}
	/* Judged once, here: a server that ends the session (shutdown, restart,
	 * pg_terminate_backend) answers FATAL and closes the socket after, and
	 * libpq only marks the connection bad once it has read on; a pipeline
	 * that could not be left leaves the connection unusable. Either way the
	 * commit (the Sync's) was not seen: the caller reconnects and reports
	 * again (AT_ESTALE then if it had committed after all). */
	if (rc == AT_EDB)
		rc = conn_error_res(conn, failed);
	if (rc == 0) {
		const char *s = scalar(res[0]);
		rc = PQntuples(res[1]) == 0 ? 0 : job_from_row(res[1], 0, next);
		if (rc == 0 && !(s && s[0] == 't'))
			rc = AT_ESTALE;
	}
	for (int q = 0; q < 3; q++)
		PQclear(res[q]);
out:
	at_buf_free(&cp.kinds);
	return rc;
}

int queue_heartbeat(PGconn *conn, int64_t id, int64_t token, double fraction, const char *msg, int eta_s, int lease_s,
		    int *cancel_out)
{
	char i[24], t[24], f[32], e[16], l[16];
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	snprintf(f, sizeof f, "%.6f", fraction);
	snprintf(e, sizeof e, "%d", eta_s);
	snprintf(l, sizeof l, "%d", lease_s);
	const char *v[6] = {i, t, fraction >= 0 ? f : NULL, msg, eta_s >= 0 ? e : NULL, l};
	PGresult *res;
	int rc = exec(conn, "q_heartbeat", 6, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	if (cancel_out)
		*cancel_out = s && strcmp(s, "cancel") == 0;
	if (!s || strcmp(s, "stale") == 0)
		rc = AT_ESTALE;
	PQclear(res);
	return rc;
}

/* A statement whose single boolean answers "did the token still own the job". */
static int exec_owned(PGconn *conn, const char *stmt, int n, const char *const *v)
{
	PGresult *res;
	int rc = exec(conn, stmt, n, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	rc = s && s[0] == 't' ? 0 : AT_ESTALE;
	PQclear(res);
	return rc;
}

int queue_complete(PGconn *conn, int64_t id, int64_t token, const char *result_json)
{
	char i[24], t[24];
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	const char *v[3] = {i, t, result_json ? result_json : "{}"};
	return exec_owned(conn, "q_complete", 3, v);
}

int queue_fail(PGconn *conn, int64_t id, int64_t token, const char *error, int retryable, char *state_out)
{
	char i[24], t[24];
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	const char *v[4] = {i, t, error ? error : "failed", retryable ? "true" : "false"};
	PGresult *res;
	int rc = exec(conn, "q_fail", 4, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	if (!s)
		rc = AT_ESTALE;
	else if (state_out)
		snprintf(state_out, 16, "%s", s);
	PQclear(res);
	return rc;
}

int queue_release(PGconn *conn, int64_t id, int64_t token)
{
	char i[24], t[24];
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	const char *v[2] = {i, t};
	return exec_owned(conn, "q_release", 2, v);
}

int queue_metrics(PGconn *conn, int64_t id, int64_t token, int64_t step, const char *const *names, const double *values,
		  int n)
{
	char i[24], t[24], s[24];
	struct at_buf nb, vb;
	at_buf_init(&nb, 1024 * 1024);
	at_buf_init(&vb, 1024 * 1024);
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	snprintf(s, sizeof s, "%" PRId64, step);
	int rc = array_literal(&nb, names, n);
	if (rc == 0)
		rc = at_buf_addstr(&vb, "{");
	for (int k = 0; rc == 0 && k < n; k++)
		rc = at_buf_printf(&vb, "%s%.17g", k ? "," : "", values[k]);
	if (rc == 0)
		rc = at_buf_addstr(&vb, "}");
	if (rc == 0) {
		const char *v[5] = {i, t, s, nb.data, vb.data};
		rc = exec_owned(conn, "q_metrics", 5, v);
	}
	at_buf_free(&nb);
	at_buf_free(&vb);
	return rc;
}

int queue_reap(PGconn *conn, int *count)
{
	PGresult *res;
	int rc = exec(conn, "q_reap", 0, NULL, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	if (count)
		*count = s ? (int)strtol(s, NULL, 10) : 0;
	PQclear(res);
	return 0;
}

int queue_cancel(PGconn *conn, int64_t id, char *state_out)
{
	char i[24];
	snprintf(i, sizeof i, "%" PRId64, id);
	const char *v[1] = {i};
	PGresult *res;
	int rc = exec(conn, "q_cancel", 1, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	if (!s)
		rc = AT_ENOTFOUND;
	else if (state_out)
		snprintf(state_out, 16, "%s", s);
	PQclear(res);
	return rc;
}

int queue_worker_seen(PGconn *conn, const char *worker, const char *const *kinds, int gpus)
{
	char g[16];
	struct at_buf kl;
	at_buf_init(&kl, 64 * 1024);
	int rc = array_literal(&kl, kinds, -1);
	if (rc == 0) {
		snprintf(g, sizeof g, "%d", gpus);
		const char *v[3] = {worker, kl.data, g};
		PGresult *res;
		rc = exec(conn, "q_worker_seen", 3, v, &res);
		PQclear(res);
	}
	at_buf_free(&kl);
	return rc;
}

/* ---- waiting for work ---- */

int queue_listen(PGconn *conn)
{
	PGresult *res = PQexec(conn, "LISTEN atelier_jobs");
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		log_error("queue: LISTEN: %s", PQresultErrorMessage(res));
	PQclear(res);
	if (!ok)
		return conn_error(conn);
	return 0;
}

/* Consume every buffered notification; 1 if there was any. */
static int drain_notifies(PGconn *conn)
{
	int got = 0;
	PGnotify *n;
	while ((n = PQnotifies(conn)) != NULL) {
		got = 1;
		PQfreemem(n);
	}
	return got;
}

int queue_listen_wait(PGconn *conn, int timeout_ms, int wake_fd)
{
	if (drain_notifies(conn))
		return 1;
	int sock = PQsocket(conn);
	if (sock < 0)
		return AT_EUNAVAILABLE;
	struct pollfd p[2] = {{.fd = sock, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
	for (;;) {
		int n = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return AT_EIO;
		if (n == 0)
			return 0;
		if (wake_fd >= 0 && p[1].revents)
			return 2;
		if (!PQconsumeInput(conn)) {
			log_error("queue: listen connection: %s", PQerrorMessage(conn));
			return AT_EUNAVAILABLE;
		}
		if (drain_notifies(conn))
			return 1;
		/* Readable but no whole notification yet (or a NOTICE): wait again.
		 * The timeout restarts, which only ever lengthens a safety-net poll a little. */
	}
}

/* ---- gangs ---- */

static const char *const gang_state_names[] = {
	[QUEUE_GANG_FILLING] = "filling", [QUEUE_GANG_FORMED] = "formed", [QUEUE_GANG_RELEASED] = "released",
	[QUEUE_GANG_FAILED] = "failed",   [QUEUE_GANG_DONE] = "done",     [QUEUE_GANG_GONE] = "gone",
};

const char *queue_gang_state_name(enum queue_gang_state s)
{
	return (unsigned)s < sizeof gang_state_names / sizeof gang_state_names[0] ? gang_state_names[s] : "?";
}

int queue_gang_size(PGconn *conn, int64_t id, int64_t token, int *size)
{
	char i[24], t[24];
	snprintf(i, sizeof i, "%" PRId64, id);
	snprintf(t, sizeof t, "%" PRId64, token);
	const char *v[2] = {i, t};
	PGresult *res;
	int rc = exec(conn, "q_gang_size", 2, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	*size = s ? (int)strtol(s, NULL, 10) : 0;
	PQclear(res);
	return s ? 0 : AT_ESTALE;
}

int queue_gang_open(PGconn *conn, const struct queue_job *job, int size, const char *rendezvous, int fill_s,
		    int lease_s, struct queue_gang *out)
{
	char i[24], t[24], f[16], l[16];
	memset(out, 0, sizeof *out);
	if (!rendezvous || strlen(rendezvous) >= sizeof out->rendezvous || size < 2)
		return AT_EINVAL;
	snprintf(i, sizeof i, "%" PRId64, job->id);
	snprintf(t, sizeof t, "%" PRId64, job->token);
	snprintf(f, sizeof f, "%d", fill_s);
	snprintf(l, sizeof l, "%d", lease_s);
	const char *v[5] = {i, t, rendezvous, f, l};
	int rc = exec_owned(conn, "q_gang_open", 5, v);
	if (rc < 0)
		return rc;
	out->job_id = job->id;
	out->gang_token = out->member_token = job->token;
	out->rank = 0;
	out->size = size;
	snprintf(out->rendezvous, sizeof out->rendezvous, "%s", rendezvous);
	return 0;
}

int queue_gang_join(PGconn *conn, const char *worker, const char *const *kinds, int gpus, int lease_s,
		    struct queue_job *job, struct queue_gang *out)
{
	memset(job, 0, sizeof *job);
	memset(out, 0, sizeof *out);
	struct claim_params cp;
	int rc = claim_params_init(&cp, worker, kinds, gpus, lease_s);
	PGresult *res = NULL;
	if (rc == 0)
		rc = exec(conn, "q_gang_join", 4, cp.v, &res);
	if (rc == 0 && PQntuples(res) == 0)
		rc = AT_ENOTFOUND;
	if (rc == 0 && (rc = job_from_row(res, 0, job)) == 0) {
		out->job_id = job->id;
		out->member_token = job->token;
		out->gang_token = strtoll(PQgetvalue(res, 0, 10), NULL, 10);
		out->rank = (int)strtol(PQgetvalue(res, 0, 11), NULL, 10);
		out->size = (int)strtol(PQgetvalue(res, 0, 12), NULL, 10);
		snprintf(out->rendezvous, sizeof out->rendezvous, "%s", PQgetvalue(res, 0, 13));
	}
	PQclear(res);
	at_buf_free(&cp.kinds);
	return rc;
}

int queue_gang_poll(PGconn *conn, const struct queue_gang *g, int lease_s, enum queue_gang_state *state)
{
	char i[24], t[24], r[16], m[24], l[16];
	snprintf(i, sizeof i, "%" PRId64, g->job_id);
	snprintf(t, sizeof t, "%" PRId64, g->gang_token);
	snprintf(r, sizeof r, "%d", g->rank);
	snprintf(m, sizeof m, "%" PRId64, g->member_token);
	snprintf(l, sizeof l, "%d", lease_s);
	const char *v[5] = {i, t, r, m, l};
	PGresult *res;
	int rc = exec(conn, "q_gang_poll", 5, v, &res);
	if (rc < 0)
		return rc;
	const char *s = scalar(res);
	*state = QUEUE_GANG_GONE;
	for (size_t k = 0; s && k < sizeof gang_state_names / sizeof gang_state_names[0]; k++)
		if (strcmp(s, gang_state_names[k]) == 0)
			*state = (enum queue_gang_state)k;
	PQclear(res);
	return 0;
}
