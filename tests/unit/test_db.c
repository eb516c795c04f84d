/* Unit tests for lib/db.c against the harness's real PostgreSQL. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db.h"
#include "test.h"

static uv_loop_t loop;
static db_pool_t *pool;
static int done_count;
static char last_value[256];
static int last_status;
static const char *last_sqlstate;

static void setup(int nconns)
{
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	ASSERT_EQ_INT(db_pool_new(&loop, test_db_url(), nconns, &pool), 0);
	done_count = 0;
	last_value[0] = 0;
}

static void closed(void *arg) { *(int *)arg = 1; }

static void teardown(void)
{
	int c = 0;
	db_pool_close(pool, closed, &c);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(c, 1);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static void run_until(int n)
{
	uint64_t deadline = uv_hrtime() + 10000000000ull;
	while (done_count < n && uv_hrtime() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	ASSERT_EQ_INT(done_count, n);
}

static char sqlstate_buf[8];

static void on_value(void *arg, int status, PGresult *res)
{
	last_status = status;
	last_sqlstate = NULL;
	if (status == 0 && PQntuples(res) > 0)
		snprintf(last_value, sizeof last_value, "%s", PQgetvalue(res, 0, 0));
	if (status == AT_EDB) {
		snprintf(sqlstate_buf, sizeof sqlstate_buf, "%s", db_sqlstate(res));
		last_sqlstate = sqlstate_buf;
	}
	done_count++;
}

TEST(query_with_params)
{
	SKIP_WITHOUT_DB();
	setup(2);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, "20");
	db_param_text(&p, "22");
	ASSERT_EQ_INT(db_query(pool, "SELECT $1::int + $2::int", &p, on_value, NULL), 0);
	run_until(1);
	ASSERT_EQ_INT(last_status, 0);
	ASSERT_STREQ(last_value, "42");
	teardown();
}

TEST(binary_param_roundtrip)
{
	SKIP_WITHOUT_DB();
	setup(1);
	unsigned char bytes[4] = {0, 1, 254, 255};
	struct db_params p;
	db_params_init(&p);
	db_param_bin(&p, bytes, 4);
	ASSERT_EQ_INT(db_query(pool, "SELECT encode($1::bytea, 'hex')", &p, on_value, NULL), 0);
	run_until(1);
	ASSERT_STREQ(last_value, "0001feff");
	teardown();
}

TEST(error_reports_sqlstate)
{
	SKIP_WITHOUT_DB();
	setup(1);
	ASSERT_EQ_INT(db_query(pool, "SELECT 1/0", NULL, on_value, NULL), 0);
	run_until(1);
	ASSERT_EQ_INT(last_status, AT_EDB);
	ASSERT_STREQ(last_sqlstate, "22012");
	/* the connection is still usable after an error */
	ASSERT_EQ_INT(db_query(pool, "SELECT 'ok'", NULL, on_value, NULL), 0);
	run_until(2);
	ASSERT_STREQ(last_value, "ok");
	teardown();
}

TEST(many_queries_keep_order_per_caller)
{
	SKIP_WITHOUT_DB();
	setup(4);
	for (int i = 0; i < 200; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", i);
		struct db_params p;
		db_params_init(&p);
		db_param_text(&p, v);
		ASSERT_EQ_INT(db_query(pool, "SELECT $1::int", &p, on_value, NULL), 0);
	}
	run_until(200);
	teardown();
}

static db_tx_t *the_tx;
static void on_tx(void *arg, int status, db_tx_t *tx)
{
	last_status = status;
	the_tx = tx;
	done_count++;
}

static void tx_scenario(int commit)
{
	struct db_params p;
	run_until(done_count + 1); /* create table */
	ASSERT_EQ_INT(db_tx_begin(pool, on_tx, NULL), 0);
	run_until(2);
	ASSERT_EQ_INT(last_status, 0);
	db_params_init(&p);
	db_param_text(&p, commit ? "committed" : "rolled back");
	ASSERT_EQ_INT(db_tx_query(the_tx, "INSERT INTO t_tx VALUES ($1)", &p, on_value, NULL), 0);
	if (commit)
		ASSERT_EQ_INT(db_tx_commit(the_tx, on_value, NULL), 0);
	else
		ASSERT_EQ_INT(db_tx_rollback(the_tx, on_value, NULL), 0);
	run_until(4);
	ASSERT_EQ_INT(last_status, 0);
	ASSERT_EQ_INT(db_query(pool, "SELECT count(*) FROM t_tx", NULL, on_value, NULL), 0);
	run_until(5);
}

TEST(transaction_commit)
{
	SKIP_WITHOUT_DB();
	/* temp tables are per connection: one connection for this test */
	setup(1);
	ASSERT_EQ_INT(db_query(pool, "CREATE TEMP TABLE t_tx (v text)", NULL, on_value, NULL), 0);
	tx_scenario(1);
	ASSERT_STREQ(last_value, "1");
	teardown();
}

TEST(transaction_rollback)
{
	SKIP_WITHOUT_DB();
	setup(1);
	ASSERT_EQ_INT(db_query(pool, "CREATE TEMP TABLE t_tx (v text)", NULL, on_value, NULL), 0);
	tx_scenario(0);
	ASSERT_STREQ(last_value, "0");
	teardown();
}

TEST(poisoned_transaction_commit_fails)
{
	SKIP_WITHOUT_DB();
	setup(1);
	ASSERT_EQ_INT(db_tx_begin(pool, on_tx, NULL), 0);
	run_until(1);
	ASSERT_EQ_INT(db_tx_query(the_tx, "SELECT 1/0", NULL, on_value, NULL), 0);
	ASSERT_EQ_INT(db_tx_commit(the_tx, on_value, NULL), 0);
	run_until(3);
	ASSERT_EQ_INT(last_status, AT_EDB);
	teardown();
}

/* Sixteen parameters bind; a seventeenth is an error at the add and at the
 * query (db_query, db_tx_query), which queues nothing: never a statement
 * that runs with a parameter silently left out. */
TEST(seventeenth_param_is_an_error)
{
	SKIP_WITHOUT_DB();
	setup(1);
	static const char *const digits[] = {"1",  "2",  "3",  "4",  "5",  "6",  "7",  "8", "9",
					     "10", "11", "12", "13", "14", "15", "16", "17"};
	struct db_params p;
	db_params_init(&p);
	for (int i = 0; i < DB_MAX_PARAMS; i++)
		ASSERT_EQ_INT(db_param_text(&p, digits[i]), 0);
	const char *sql16 = "SELECT $1::int+$2::int+$3::int+$4::int+$5::int+$6::int+$7::int+$8::int+$9::int+$10::int"
			    "+$11::int+$12::int+$13::int+$14::int+$15::int+$16::int";
	ASSERT_EQ_INT(db_query(pool, sql16, &p, on_value, NULL), 0);
	run_until(1);
	ASSERT_EQ_INT(last_status, 0);
	ASSERT_STREQ(last_value, "136");
	ASSERT_EQ_INT(db_param_text(&p, digits[16]), AT_ERANGE);
	ASSERT_EQ_INT(p.n, DB_MAX_PARAMS);
	ASSERT_EQ_INT(db_query(pool, sql16, &p, on_value, NULL), AT_ERANGE);
	ASSERT_EQ_INT(db_query_binary(pool, sql16, &p, on_value, NULL), AT_ERANGE);
	unsigned char b = 7;
	db_params_init(&p);
	for (int i = 0; i < DB_MAX_PARAMS; i++)
		ASSERT_EQ_INT(db_param_bin(&p, &b, 1), 0);
	ASSERT_EQ_INT(db_param_bin(&p, &b, 1), AT_ERANGE);
	ASSERT_EQ_INT(db_tx_begin(pool, on_tx, NULL), 0);
	run_until(2);
	ASSERT_EQ_INT(db_tx_query(the_tx, sql16, &p, on_value, NULL), AT_ERANGE);
	ASSERT_EQ_INT(db_tx_rollback(the_tx, on_value, NULL), 0);
	run_until(3); /* the refused statements never called back */
	ASSERT_EQ_INT(last_status, 0);
	teardown();
}

static char notified[256];
static int reconnect_calls;
static void on_notify(void *arg, const char *channel, const char *payload)
{
	if (!channel) {
		reconnect_calls++;
		return;
	}
	snprintf(notified, sizeof notified, "%s:%s", channel, payload);
}

TEST(listen_notify)
{
	SKIP_WITHOUT_DB();
	setup(1);
	notified[0] = 0;
	ASSERT_EQ_INT(db_listen(pool, "test_chan", on_notify, NULL), 0);
	/* wait for the listen connection to come up */
	uint64_t deadline = uv_hrtime() + 5000000000ull;
	while (reconnect_calls == 0 && uv_hrtime() < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	ASSERT_OP_INT(reconnect_calls, >=, 1);
	/* LISTEN is queued on that connection before any NOTIFY we send now
	 * completes, but the NOTIFY travels over another connection: retry briefly. */
	for (int i = 0; i < 50 && !notified[0]; i++) {
		int before = done_count;
		ASSERT_EQ_INT(db_query(pool, "SELECT pg_notify('test_chan', 'hello')", NULL, on_value, NULL), 0);
		run_until(before + 1);
		uint64_t until = uv_hrtime() + 100000000ull;
		while (!notified[0] && uv_hrtime() < until)
			uv_run(&loop, UV_RUN_NOWAIT);
	}
	ASSERT_STREQ(notified, "test_chan:hello");
	teardown();
}

TEST(unreachable_server_fails_fast)
{
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	ASSERT_EQ_INT(db_pool_new(&loop, "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", 1, &pool), 0);
	/* the first connect attempt fails at once (connection refused) */
	uint64_t deadline = uv_hrtime() + 3000000000ull;
	int rc = 0;
	while (uv_hrtime() < deadline) {
		uv_run(&loop, UV_RUN_NOWAIT);
		rc = db_query(pool, "SELECT 1", NULL, on_value, NULL);
		if (rc < 0)
			break;
	}
	ASSERT_EQ_INT(rc, AT_EUNAVAILABLE);
	teardown();
}

TEST(migrate_is_idempotent)
{
	SKIP_WITHOUT_DB();
	const char *dir = getenv("ATELIER_SQL_DIR");
	if (!dir)
		dir = "sql";
	PGconn *c = db_connect_blocking(test_db_url(), 5000);
	ASSERT(c != NULL);
	PQclear(PQexec(c, "DROP DATABASE IF EXISTS unit_migrate WITH (FORCE)"));
	PGresult *r = PQexec(c, "CREATE DATABASE unit_migrate");
	ASSERT_EQ_INT(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	char url[512];
	snprintf(url, sizeof url, "%s", test_db_url());
	char *slash = strrchr(url, '/');
	ASSERT(slash != NULL);
	snprintf(slash + 1, sizeof url - (size_t)(slash + 1 - url), "unit_migrate");
	PGconn *m = db_connect_blocking(url, 5000);
	ASSERT(m != NULL);
	int first = db_migrate(m, dir);
	ASSERT_OP_INT(first, >=, 1);
	ASSERT_EQ_INT(db_migrate(m, dir), 0);
	PQfinish(m);
	PQclear(PQexec(c, "DROP DATABASE unit_migrate WITH (FORCE)"));
	PQfinish(c);
}

RUN_TESTS(query_with_params, binary_param_roundtrip, error_reports_sqlstate, many_queries_keep_order_per_caller,
	  transaction_commit, transaction_rollback, poisoned_transaction_commit_fails, seventeenth_param_is_an_error,
	  listen_notify, unreachable_server_fails_fast, migrate_is_idempotent)
