/*
 * scheduler.c — leadership by advisory lock, the leader's tick, and
 * NOTIFY-driven `new_sketches` triggers. See scheduler.h.
 *
 * The leader's lock lives on a one-connection pool of its own: a session-level
 * advisory lock belongs to one PostgreSQL session, so it must not share a
 * connection with ordinary queries that could land on any pooled session.
 * When that connection drops, leadership is dropped with it at once (the
 * server released the lock when the session ended).
 *
 * Trigger checks are coalesced: a burst of ingest NOTIFYs causes at most one
 * check in flight plus one more afterwards, never one per sketch.
 */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define LEADER_LOCK_KEY "7316002"

struct scheduler {
	struct app *app;
	db_pool_t *lock_db;
	uv_timer_t tick;
	int tick_ms;
	int leader;
	int tick_inflight;
	int check_inflight;
	int check_again;
	int stopping;
	uint64_t ticks, reaped, triggered, leader_since;
	void (*on_closed)(void *);
	void *closed_arg;
	int closing_parts;
};

static void run_check(struct scheduler *s);

static void on_lock_state(void *arg, int connected)
{
	struct scheduler *s = arg;
	if (!connected && s->leader) {
		log_warn("scheduler: lost the leader connection; standing down");
		s->leader = 0;
	}
}

static void on_checked(void *arg, int status, PGresult *res)
{
	struct scheduler *s = arg;
	s->check_inflight = 0;
	if (status == 0 && PQntuples(res) == 1) {
		long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		if (n > 0) {
			s->triggered += (uint64_t)n;
			log_info("scheduler: %ld run(s) triggered", n);
		}
	}
	if (s->check_again && !s->stopping) {
		s->check_again = 0;
		run_check(s);
	}
}

static void run_check(struct scheduler *s)
{
	if (!s->leader || s->stopping)
		return;
	if (s->check_inflight) {
		s->check_again = 1;
		return;
	}
	if (db_query(s->lock_db, "SELECT atelier_check_triggers()", NULL, on_checked, s) == 0)
		s->check_inflight = 1;
}

/* "sketch:train:ID" — only accepted training sketches can fire new_sketches;
 * "sketch:deleted:N" — N withdrawals (sql/014_rights.sql) may fire deletions. */
static void on_ingest(void *arg, const char *channel, const char *payload)
{
	struct scheduler *s = arg;
	if (!channel || strncmp(payload, "sketch:train:", 13) == 0 || strncmp(payload, "sketch:deleted:", 15) == 0)
		run_check(s);
}

static void on_ticked(void *arg, int status, PGresult *res)
{
	struct scheduler *s = arg;
	s->tick_inflight = 0;
	if (status < 0) {
		log_warn("scheduler: tick failed: %s", res ? PQresultErrorMessage(res) : "connection lost");
		return;
	}
	s->ticks++;
	s->reaped += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	s->triggered += strtoull(PQgetvalue(res, 0, 1), NULL, 10);
}

static void on_locked(void *arg, int status, PGresult *res)
{
	struct scheduler *s = arg;
	s->tick_inflight = 0;
	if (status < 0 || s->stopping)
		return;
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		s->leader = 1;
		s->leader_since = uv_now(s->app->loop);
		log_info("scheduler: this atelierd is now the leader");
		/* Catch up on anything that arrived while nobody led. */
		run_check(s);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct scheduler *s = t->data;
	if (s->tick_inflight || s->stopping)
		return;
	int rc;
	if (s->leader)
		rc = db_query(s->lock_db, "SELECT reaped, triggered FROM atelier_tick()", NULL, on_ticked, s);
	else
		rc = db_query(s->lock_db, "SELECT pg_try_advisory_lock(" LEADER_LOCK_KEY ")", NULL, on_locked, s);
	if (rc == 0)
		s->tick_inflight = 1;
}

int scheduler_start(struct app *app, int tick_ms, struct scheduler **out)
{
	struct scheduler *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	s->app = app;
	s->tick_ms = tick_ms > 0 ? tick_ms : 1000;
	int rc = db_pool_new(app->loop, app->cfg.database_url, 1, &s->lock_db);
	if (rc < 0) {
		free(s);
		return rc;
	}
	db_pool_on_state(s->lock_db, on_lock_state, s);
	rc = db_listen(app->db, "atelier_ingest", on_ingest, s);
	if (rc < 0) {
		db_pool_close(s->lock_db, NULL, NULL);
		free(s);
		return rc;
	}
	uv_timer_init(app->loop, &s->tick);
	s->tick.data = s;
	uv_timer_start(&s->tick, tick_cb, 50, (uint64_t)s->tick_ms);
	*out = s;
	return 0;
}

int scheduler_is_leader(const struct scheduler *s) { return s && s->leader; }

static void part_closed(struct scheduler *s)
{
	if (--s->closing_parts > 0)
		return;
	void (*cb)(void *) = s->on_closed;
	void *arg = s->closed_arg;
	free(s);
	if (cb)
		cb(arg);
}

static void tick_closed(uv_handle_t *h) { part_closed(h->data); }
static void lock_db_closed(void *arg) { part_closed(arg); }

void scheduler_stop(struct scheduler *s, void (*on_closed)(void *), void *arg)
{
	if (!s) {
		if (on_closed)
			on_closed(arg);
		return;
	}
	s->stopping = 1;
	s->on_closed = on_closed;
	s->closed_arg = arg;
	s->closing_parts = 2;
	uv_timer_stop(&s->tick);
	uv_close((uv_handle_t *)&s->tick, tick_closed);
	/* Closing the session releases the advisory lock: a standby takes over. */
	db_pool_close(s->lock_db, lock_db_closed, s);
}

int scheduler_metrics(const struct scheduler *s, struct at_buf *b)
{
	return at_buf_printf(
		b,
		"# HELP atelier_scheduler_leader 1 while this atelierd holds the leader lock.\n"
		"# TYPE atelier_scheduler_leader gauge\natelier_scheduler_leader %d\n"
		"# HELP atelier_scheduler_ticks_total Leader ticks run.\n"
		"# TYPE atelier_scheduler_ticks_total counter\natelier_scheduler_ticks_total %llu\n"
		"# HELP atelier_scheduler_reaped_total Jobs whose lease expired, requeued or failed.\n"
		"# TYPE atelier_scheduler_reaped_total counter\natelier_scheduler_reaped_total %llu\n"
		"# HELP atelier_scheduler_triggered_total Runs started by triggers.\n"
		"# TYPE atelier_scheduler_triggered_total counter\natelier_scheduler_triggered_total %llu\n",
		s ? s->leader : 0, (unsigned long long)(s ? s->ticks : 0), (unsigned long long)(s ? s->reaped : 0),
		(unsigned long long)(s ? s->triggered : 0));
}
