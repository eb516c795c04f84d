/* Unit tests for the job queue: sql/002_queue.sql's functions through lib/queue.c,
 * in a database of their own (created from ATELIER_TEST_DATABASE_URL, migrated
 * with db_migrate, dropped at exit). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "queue.h"
#include "stage_kind.h"
#include "test.h"

static PGconn *admin, *conn;
static char dbname[64];

static void drop_db(void)
{
	PQfinish(conn);
	conn = NULL;
	if (admin) {
		char q[128];
		snprintf(q, sizeof q, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", dbname);
		PQclear(PQexec(admin, q));
		PQfinish(admin);
		admin = NULL;
	}
}

/* The test database's URL: the harness URL with its database name replaced. */
static void db_url_for(char *out, size_t cap, const char *name)
{
	const char *base = test_db_url();
	const char *slash = strrchr(base, '/');
	snprintf(out, cap, "%.*s/%s", (int)(slash - base), base, name);
}

static PGconn *new_conn(void)
{
	char url[512];
	db_url_for(url, sizeof url, dbname);
	PGconn *c = NULL;
	ASSERT_EQ_INT(queue_connect(url, &c), 0);
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

/* One database for the whole file, created on first use. */
static PGconn *db(void)
{
	if (conn)
		return conn;
	admin = db_connect_blocking(test_db_url(), 5000);
	ASSERT(admin != NULL);
	snprintf(dbname, sizeof dbname, "atelier_tq_%d", (int)getpid());
	char q[128];
	snprintf(q, sizeof q, "CREATE DATABASE \"%s\"", dbname);
	PGresult *r = PQexec(admin, q);
	ASSERT_EQ_INT(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	atexit(drop_db);
	char url[512];
	db_url_for(url, sizeof url, dbname);
	PGconn *m = db_connect_blocking(url, 5000);
	ASSERT(m != NULL);
	const char *dir = getenv("ATELIER_SQL_DIR");
	ASSERT_OP_INT(db_migrate(m, dir ? dir : "sql"), >=, 2);
	PQfinish(m);
	conn = new_conn();
	return conn;
}

/* Run SQL; the first value of the first row (static buffer; "" when none). */
static const char *sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *sqlf(const char *fmt, ...)
{
	static char out[4096];
	char q[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q, sizeof q, fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(db(), q);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		snprintf(out, sizeof out, "%s", PQresultErrorMessage(r));
		PQclear(r);
		TEST_FAIL_("%s: %s", q, out);
	}
	snprintf(out, sizeof out, "%s", st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return out;
}

static void fresh(void)
{
	db();
	sqlf("TRUNCATE jobs, metrics, workers CASCADE");
}

static int64_t enqueue(const char *kind, int priority, int needs_gpu, int max_attempts)
{
	struct queue_new_job nj = {.kind = kind,
				   .priority = priority,
				   .needs_gpu = needs_gpu,
				   .max_attempts = max_attempts,
				   .backoff_s = 10};
	int64_t id = 0;
	ASSERT_EQ_INT(queue_enqueue(db(), &nj, &id), 0);
	ASSERT_OP_INT(id, >, 0);
	return id;
}

static const char *const ab[] = {"a", "b", NULL};
static const char *const only_a[] = {"a", NULL};

TEST(claim_order_priority_then_fifo)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t a1 = enqueue("a", 5, 0, 3);
	int64_t a2 = enqueue("a", 0, 0, 3);
	int64_t b1 = enqueue("b", 0, 0, 3);
	int64_t a3 = enqueue("a", 5, 0, 3);
	struct queue_new_job later = {.kind = "a", .priority = -10, .delay_s = 3600};
	ASSERT_EQ_INT(queue_enqueue(db(), &later, NULL), 0);
	int64_t want[] = {a2, b1, a1, a3};
	for (int i = 0; i < 4; i++) {
		struct queue_job j;
		ASSERT_EQ_INT(queue_claim(db(), "w1", ab, 0, 30, &j), 0);
		ASSERT_EQ_INT(j.id, want[i]);
		ASSERT_EQ_INT(j.attempts, 1);
		ASSERT_STREQ(j.payload, "{}");
		ASSERT(j.stage == NULL);
		queue_job_clear(&j);
	}
	/* Only the delayed job is left: not claimable before run_after. */
	struct queue_job j;
	ASSERT_EQ_INT(queue_claim(db(), "w1", ab, 0, 30, &j), AT_ENOTFOUND);
	ASSERT_STREQ(sqlf("SELECT count(*) FROM jobs WHERE state = 'running' AND worker = 'w1'"), "4");
}

TEST(claim_filters_kinds)
{
	SKIP_WITHOUT_DB();
	fresh();
	enqueue("b", 0, 0, 3);
	struct queue_job j;
	ASSERT_EQ_INT(queue_claim(db(), "w1", only_a, 0, 30, &j), AT_ENOTFOUND);
	int64_t a = enqueue("a", 0, 0, 3);
	ASSERT_EQ_INT(queue_claim(db(), "w1", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, a);
	ASSERT_STREQ(j.kind, "a");
	queue_job_clear(&j);
}

TEST(gpu_jobs_only_to_gpu_workers)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t g2 = enqueue("a", 0, 2, 3);
	int64_t g1 = enqueue("a", 1, 1, 3);
	int64_t cpu = enqueue("a", 2, 0, 3);
	struct queue_job j;
	/* A CPU worker skips both GPU jobs though they come first. */
	ASSERT_EQ_INT(queue_claim(db(), "cpu", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, cpu);
	queue_job_clear(&j);
	ASSERT_EQ_INT(queue_claim(db(), "cpu", only_a, 0, 30, &j), AT_ENOTFOUND);
	/* One GPU is not enough for the 2-GPU job. */
	ASSERT_EQ_INT(queue_claim(db(), "gpu1", only_a, 1, 30, &j), 0);
	ASSERT_EQ_INT(j.id, g1);
	ASSERT_EQ_INT(j.needs_gpu, 1);
	queue_job_clear(&j);
	ASSERT_EQ_INT(queue_claim(db(), "gpu1", only_a, 1, 30, &j), AT_ENOTFOUND);
	ASSERT_EQ_INT(queue_claim(db(), "gpu2", only_a, 2, 30, &j), 0);
	ASSERT_EQ_INT(j.id, g2);
	queue_job_clear(&j);
}

TEST(complete_stores_result_and_rejects_stale_owner)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t id = enqueue("a", 0, 0, 3);
	struct queue_job old, cur;
	ASSERT_EQ_INT(queue_claim(db(), "w1", only_a, 0, 30, &old), 0);
	int cancel = -1;
	ASSERT_EQ_INT(queue_heartbeat(db(), id, old.token, 0.25, "quarter", 90, 30, &cancel), 0);
	ASSERT_EQ_INT(cancel, 0);
	ASSERT_STREQ(sqlf("SELECT format('%%s|%%s|%%s', progress, progress_msg, eta_seconds) FROM jobs WHERE id = %lld",
			  (long long)id),
		     "0.25|quarter|90");
	/* w1's lease runs out; the reaper re-queues; w2 claims the second attempt. */
	sqlf("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = %lld", (long long)id);
	ASSERT_STREQ(sqlf("SELECT atelier_reap()"), "1");
	ASSERT_STREQ(sqlf("SELECT state FROM jobs WHERE id = %lld", (long long)id), "queued");
	sqlf("UPDATE jobs SET run_after = now() WHERE id = %lld", (long long)id);
	ASSERT_EQ_INT(queue_claim(db(), "w2", only_a, 0, 30, &cur), 0);
	ASSERT_EQ_INT(cur.id, id);
	ASSERT_EQ_INT(cur.attempts, 2);
	ASSERT_NE_INT(cur.token, old.token);
	/* The first worker wakes up: everything it says about the job is refused. */
	ASSERT_EQ_INT(queue_heartbeat(db(), id, old.token, 0.5, NULL, -1, 30, NULL), AT_ESTALE);
	ASSERT_EQ_INT(queue_complete(db(), id, old.token, "{\"by\":\"w1\"}"), AT_ESTALE);
	ASSERT_EQ_INT(queue_fail(db(), id, old.token, "late", 1, NULL), AT_ESTALE);
	ASSERT_EQ_INT(queue_release(db(), id, old.token), AT_ESTALE);
	const char *const names[] = {"loss", NULL};
	double v = 1.5;
	ASSERT_EQ_INT(queue_metrics(db(), id, old.token, 1, names, &v, 1), AT_ESTALE);
	ASSERT_EQ_INT(queue_metrics(db(), id, cur.token, 1, names, &v, 1), 0);
	ASSERT_EQ_INT(queue_complete(db(), id, cur.token, "{\"by\":\"w2\"}"), 0);
	ASSERT_STREQ(
		sqlf("SELECT format('%%s|%%s|%%s|%%s', state, result->>'by', attempts, progress) FROM jobs WHERE id = %lld",
		     (long long)id),
		"succeeded|w2|2|1");
	/* Finished is final: neither token moves it again. */
	ASSERT_EQ_INT(queue_complete(db(), id, cur.token, "{}"), AT_ESTALE);
	ASSERT_EQ_INT(queue_fail(db(), id, cur.token, "x", 1, NULL), AT_ESTALE);
	ASSERT_STREQ(sqlf("SELECT value FROM metrics WHERE job_id = %lld AND name = 'loss'", (long long)id), "1.5");
	queue_job_clear(&old);
	queue_job_clear(&cur);
}

TEST(complete_claim_is_one_call)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t a = enqueue("a", 0, 0, 3), b = enqueue("a", 0, 0, 3);
	struct queue_job j, next;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(queue_complete_claim(db(), &j, "{\"n\":1}", "w", only_a, 0, 30, &next), 0);
	ASSERT_EQ_INT(next.id, b);
	ASSERT_STREQ(sqlf("SELECT state || result::text FROM jobs WHERE id = %lld", (long long)a),
		     "succeeded{\"n\": 1}");
	/* A stale completion still claims; the caller hears AT_ESTALE. */
	enqueue("a", 0, 0, 3);
	struct queue_job third;
	ASSERT_EQ_INT(queue_complete_claim(db(), &j, NULL, "w", only_a, 0, 30, &third), AT_ESTALE);
	ASSERT_OP_INT(third.id, >, b);
	struct queue_job none;
	ASSERT_EQ_INT(queue_complete_claim(db(), &next, NULL, "w", only_a, 0, 30, &none), 0);
	ASSERT_EQ_INT(none.id, 0);
	queue_job_clear(&j);
	queue_job_clear(&next);
	queue_job_clear(&third);
	queue_job_clear(&none);
}

TEST(fail_backs_off_then_requeues_until_max_attempts)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t id = enqueue("a", 0, 0, 3);
	for (int attempt = 1; attempt <= 3; attempt++) {
		struct queue_job j;
		ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
		ASSERT_EQ_INT(j.attempts, attempt);
		char state[16];
		ASSERT_EQ_INT(queue_fail(db(), id, j.token, "boom", 1, state), 0);
		queue_job_clear(&j);
		if (attempt < 3) {
			ASSERT_STREQ(state, "queued");
			/* backoff_s = 10: attempt n waits 10 * 2^(n-1) s, jittered into [d/2, d]. */
			double d = 10.0 * (1 << (attempt - 1));
			double wait =
				strtod(sqlf("SELECT extract(epoch FROM run_after - now()) FROM jobs WHERE id = %lld",
					    (long long)id),
				       NULL);
			ASSERT_OP_DBL(wait, >=, d / 2 - 0.5);
			ASSERT_OP_DBL(wait, <=, d + 0.5);
			ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), AT_ENOTFOUND);
			sqlf("UPDATE jobs SET run_after = now() WHERE id = %lld", (long long)id);
		} else {
			ASSERT_STREQ(state, "failed");
		}
	}
	ASSERT_STREQ(sqlf("SELECT format('%%s|%%s|%%s', state, attempts, error) FROM jobs WHERE id = %lld",
			  (long long)id),
		     "failed|3|boom");
	ASSERT_STREQ(sqlf("SELECT finished_at IS NOT NULL FROM jobs WHERE id = %lld", (long long)id), "t");
}

TEST(non_retryable_failure_fails_at_once)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t id = enqueue("a", 0, 0, 5);
	struct queue_job j;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	char state[16];
	ASSERT_EQ_INT(queue_fail(db(), id, j.token, "bad payload", 0, state), 0);
	ASSERT_STREQ(state, "failed");
	queue_job_clear(&j);
}

TEST(reap_expired_leases_and_timeouts)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t retry = enqueue("a", 0, 0, 2), last = enqueue("a", 1, 0, 1), timed = enqueue("a", 2, 0, 3),
		alive = enqueue("a", 3, 0, 1);
	sqlf("UPDATE jobs SET timeout_s = 5 WHERE id = %lld", (long long)timed);
	struct queue_job j[4];
	for (int i = 0; i < 4; i++)
		ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j[i]), 0);
	ASSERT_STREQ(sqlf("SELECT atelier_reap()"), "0");
	sqlf("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id IN (%lld, %lld)", (long long)retry,
	     (long long)last);
	sqlf("UPDATE jobs SET started_at = now() - interval '6 s' WHERE id = %lld", (long long)timed);
	int n = -1;
	ASSERT_EQ_INT(queue_reap(db(), &n), 0);
	ASSERT_EQ_INT(n, 3);
	ASSERT_STREQ(sqlf("SELECT format('%%s|%%s|%%s', state, attempts, run_after > now()) FROM jobs WHERE id = %lld",
			  (long long)retry),
		     "queued|1|t");
	ASSERT_STREQ(sqlf("SELECT state FROM jobs WHERE id = %lld", (long long)last), "failed");
	ASSERT_CONTAINS(sqlf("SELECT error FROM jobs WHERE id = %lld", (long long)last), "lease expired");
	ASSERT_STREQ(sqlf("SELECT state FROM jobs WHERE id = %lld", (long long)timed), "failed");
	ASSERT_CONTAINS(sqlf("SELECT error FROM jobs WHERE id = %lld", (long long)timed), "timed out after 5 s");
	ASSERT_STREQ(sqlf("SELECT state FROM jobs WHERE id = %lld", (long long)alive), "running");
	ASSERT_EQ_INT(queue_heartbeat(db(), timed, j[2].token, -1, NULL, -1, 30, NULL), AT_ESTALE);
	ASSERT_EQ_INT(queue_heartbeat(db(), alive, j[3].token, -1, NULL, -1, 30, NULL), 0);
	for (int i = 0; i < 4; i++)
		queue_job_clear(&j[i]);
}

TEST(cancel_queued_at_once_running_through_heartbeat)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t q = enqueue("a", 1, 0, 3), r = enqueue("a", 0, 0, 3);
	struct queue_job j;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, r);
	char state[16];
	ASSERT_EQ_INT(queue_cancel(db(), q, state), 0);
	ASSERT_STREQ(state, "cancelled");
	ASSERT_EQ_INT(queue_cancel(db(), r, state), 0);
	ASSERT_STREQ(state, "running");
	ASSERT_EQ_INT(queue_cancel(db(), 999999999, state), AT_ENOTFOUND);
	int cancel = 0;
	ASSERT_EQ_INT(queue_heartbeat(db(), r, j.token, 0.5, NULL, -1, 30, &cancel), 0);
	ASSERT_EQ_INT(cancel, 1);
	/* However the handler ends, a cancelled job ends cancelled, not retried. */
	ASSERT_EQ_INT(queue_fail(db(), r, j.token, "stopped", 1, state), 0);
	ASSERT_STREQ(state, "cancelled");
	struct queue_job none;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &none), AT_ENOTFOUND);
	/* Terminal jobs stay as they are. */
	ASSERT_EQ_INT(queue_cancel(db(), r, state), 0);
	ASSERT_STREQ(state, "cancelled");
	queue_job_clear(&j);
}

TEST(release_does_not_count_the_attempt)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t id = enqueue("a", 0, 0, 1);
	struct queue_job j;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(queue_release(db(), id, j.token), 0);
	ASSERT_STREQ(sqlf("SELECT state || attempts FROM jobs WHERE id = %lld", (long long)id), "queued0");
	queue_job_clear(&j);
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.attempts, 1);
	queue_job_clear(&j);
}

TEST(listen_wait_wakes_on_enqueue)
{
	SKIP_WITHOUT_DB();
	fresh();
	PGconn *l = new_conn();
	ASSERT_EQ_INT(queue_listen(l), 0);
	ASSERT_EQ_INT(queue_listen_wait(l, 50, -1), 0);
	enqueue("a", 0, 0, 3);
	ASSERT_EQ_INT(queue_listen_wait(l, 5000, -1), 1);
	/* A bulk insert notifies once per kind, not per row. */
	sqlf("INSERT INTO jobs (kind) SELECT 'b' FROM generate_series(1, 100)");
	ASSERT_EQ_INT(queue_listen_wait(l, 5000, -1), 1);
	ASSERT_EQ_INT(queue_listen_wait(l, 50, -1), 0);
	PQfinish(l);
}

TEST(enqueue_validates_kind)
{
	SKIP_WITHOUT_DB();
	fresh();
	struct queue_new_job nj = {.kind = "Bad Kind"};
	ASSERT_EQ_INT(queue_enqueue(db(), &nj, NULL), AT_EDB);
	nj.kind = NULL;
	ASSERT_EQ_INT(queue_enqueue(db(), &nj, NULL), AT_EINVAL);
}

/* Drain: complete + claim until nothing is claimable; the number completed. */
static int drain(struct queue_job *j)
{
	int n = 0;
	while (j->id) {
		struct queue_job next;
		ASSERT_EQ_INT(queue_complete_claim(db(), j, NULL, "w", only_a, 0, 30, &next), 0);
		queue_job_clear(j);
		*j = next;
		n++;
	}
	return n;
}

/* The queue floor (sql/006): claims start there, and whatever makes a job
 * queued below it lowers it, so no queued job is ever skipped. */
TEST(queue_floor_never_hides_a_queued_job)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t held_id = enqueue("a", 0, 0, 3);
	for (int i = 0; i < 40; i++)
		enqueue("a", 0, 0, 3);
	struct queue_job held, j;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &held), 0);
	ASSERT_EQ_INT(held.id, held_id);
	/* Work through the rest: completions raise the floor past the held job. */
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(drain(&j), 40);
	ASSERT_OP_INT(strtoll(sqlf("SELECT id FROM queue_floor"), NULL, 10), >, held_id);
	/* A retry puts the held job (below the floor) back: it is claimable again. */
	ASSERT_EQ_INT(queue_fail(db(), held.id, held.token, "again", 1, NULL), 0);
	sqlf("UPDATE jobs SET run_after = now() WHERE id = %lld", (long long)held_id);
	ASSERT_STREQ(sqlf("SELECT id FROM queue_floor"), sqlf("SELECT %lld", (long long)held_id));
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, held_id);
	/* So does an expired lease, reaped. */
	sqlf("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = %lld", (long long)held_id);
	int reaped = 0;
	ASSERT_EQ_INT(queue_reap(db(), &reaped), 0);
	ASSERT_EQ_INT(reaped, 1);
	sqlf("UPDATE jobs SET run_after = now() WHERE id = %lld", (long long)held_id);
	queue_job_clear(&j);
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, held_id);
	/* A new job of a lower priority number goes first, floor or not. */
	for (int i = 0; i < 20; i++)
		enqueue("a", 0, 0, 3);
	int64_t urgent = enqueue("a", -1, 0, 3);
	struct queue_job next;
	ASSERT_EQ_INT(queue_complete_claim(db(), &j, NULL, "w", only_a, 0, 30, &next), 0);
	ASSERT_EQ_INT(next.id, urgent);
	queue_job_clear(&j);
	ASSERT_EQ_INT(drain(&next), 21);
	/* A job made queued by hand (no lowering) hides below the floor, until
	 * the leader's full check finds it. */
	int64_t x = enqueue("a", 0, 0, 3);
	ASSERT_STREQ(sqlf("SELECT atelier_queue_floor_raise()"), "t");
	ASSERT_EQ_INT(strtoll(sqlf("SELECT id FROM queue_floor"), NULL, 10), x);
	sqlf("UPDATE jobs SET state = 'queued', owner_token = NULL, run_after = now() WHERE id = %lld",
	     (long long)held_id);
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, x);
	queue_job_clear(&j);
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), AT_ENOTFOUND);
	ASSERT_STREQ(sqlf("SELECT atelier_queue_floor_raise(true)"), "t");
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, held_id);
	queue_job_clear(&j);
	queue_job_clear(&held);
}

/* The worker completes a job outside any run with atelier_complete's UPDATE
 * sent bare (lib/queue.c): both must leave the same row. */
TEST(bare_completion_matches_atelier_complete)
{
	SKIP_WITHOUT_DB();
	fresh();
	int64_t a = enqueue("a", 0, 0, 3), b = enqueue("a", 0, 0, 3);
	struct queue_job j, none;
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(queue_complete(db(), j.id, j.token, "{\"n\":1}"), 0);
	queue_job_clear(&j);
	ASSERT_EQ_INT(queue_claim(db(), "w", only_a, 0, 30, &j), 0);
	ASSERT_EQ_INT(j.id, b);
	ASSERT_EQ_INT(queue_complete_claim(db(), &j, "{\"n\":1}", "w", only_a, 0, 30, &none), 0);
	ASSERT_EQ_INT(none.id, 0);
	static const char cols[] = "state, result, error, progress, eta_seconds, finished_at >= started_at,"
				   " lease_expires_at, owner_token, attempts, worker";
	char via_function[512];
	snprintf(via_function, sizeof via_function, "%s",
		 sqlf("SELECT row(%s)::text FROM jobs WHERE id = %lld", cols, (long long)a));
	ASSERT_STREQ(sqlf("SELECT row(%s)::text FROM jobs WHERE id = %lld", cols, (long long)b), via_function);
	ASSERT(strstr(via_function, "(succeeded,") == via_function);
	queue_job_clear(&j);
}

/* atelier_advance_run (sql/003_scheduler.sql, redefined by 008) cannot include lib/stage_kind.h, so it carries its own
 * copy of the stage -> job kind mapping (test-only kinds run as test.KIND):
 * a run of a pipeline with one stage of every kind must enqueue each stage as
 * the job kind the list gives, which is the kind the worker's table claims. */
TEST(scheduler_enqueues_each_stage_kind_as_its_job_kind)
{
	fresh();
	char parsed[2048] = "{\"concurrency\": 1, \"model\": \"m\", \"stages\": {";
	size_t off = strlen(parsed), n = 0;
#define STAGE_JSON(e, fn, name, job, test, cache, doc)                                                            \
	off += (size_t)snprintf(parsed + off, sizeof parsed - off, "%s\"%s\": {\"kind\": \"%s\", \"needs\": []}", \
				n++ ? ", " : "", name, name);
	STAGE_KIND_MAP(STAGE_JSON)
#undef STAGE_JSON
	snprintf(parsed + off, sizeof parsed - off, "}}");
	ASSERT(off + 2 < sizeof parsed);
	sqlf("SELECT atelier_apply_pipeline('every-kind', '', '%s'::jsonb, repeat('a', 64))", parsed);
	char run[32];
	snprintf(run, sizeof run, "%s", sqlf("SELECT run_id FROM atelier_create_run('every-kind', 'manual')"));
	char want[32];
	snprintf(want, sizeof want, "%zu", n);
	ASSERT_STREQ(sqlf("SELECT count(*) FROM jobs WHERE run_id = %s", run), want);
#define CHECK_JOB_KIND(e, fn, name, job, test, cache, doc) \
	ASSERT_STREQ(sqlf("SELECT kind FROM jobs WHERE run_id = %s AND stage = '%s'", run, name), job);
	STAGE_KIND_MAP(CHECK_JOB_KIND)
#undef CHECK_JOB_KIND
}

RUN_TESTS(claim_order_priority_then_fifo, claim_filters_kinds, gpu_jobs_only_to_gpu_workers,
	  complete_stores_result_and_rejects_stale_owner, complete_claim_is_one_call,
	  fail_backs_off_then_requeues_until_max_attempts, non_retryable_failure_fails_at_once,
	  reap_expired_leases_and_timeouts, cancel_queued_at_once_running_through_heartbeat,
	  release_does_not_count_the_attempt, listen_wait_wakes_on_enqueue, enqueue_validates_kind,
	  queue_floor_never_hides_a_queued_job, bare_completion_matches_atelier_complete,
	  scheduler_enqueues_each_stage_kind_as_its_job_kind)
