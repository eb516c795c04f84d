/*
 * db.c — asynchronous PostgreSQL on the libuv loop. See db.h for the contract.
 *
 * Shape: a pool owns N query connections and one listen connection. Every
 * connection is a small state machine (DOWN -> CONNECTING -> READY) driven by
 * one uv_poll on its socket and one uv_timer for reconnect backoff. Statements
 * wait in the pool's FIFO until a READY, idle, unpinned connection takes one;
 * a transaction pins its connection from BEGIN to COMMIT/ROLLBACK and its
 * statements wait in the connection's private queue. The listen connection
 * only ever runs LISTEN statements from its private queue.
 *
 * Invariants:
 *  - at most one statement is in flight per connection (conn->cur);
 *  - a uv_poll is bound to one socket; when libpq's socket changes (reconnect,
 *    or during connect), the old poll is closed and a new one created, and the
 *    old one is freed only in its close callback;
 *  - callbacks run from the loop, never from inside db_query/db_tx_* calls,
 *    so callers may issue new statements from a callback.
 */
#include "db.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 5000

enum q_kind { Q_PLAIN, Q_BEGIN, Q_TXSTMT, Q_COMMIT, Q_ROLLBACK, Q_LISTEN };
enum c_state { C_DOWN, C_CONNECTING, C_READY };

struct db_query {
	struct db_query *next;
	enum q_kind kind;
	char *sql;
	int nparams;
	char **values;
	int *lengths;
	int *formats;
	db_cb cb;
	void *arg;
	db_tx_cb tx_cb; /* Q_BEGIN */
	db_tx_t *tx;
	int binary; /* results in binary format */
};

struct qlist {
	struct db_query *head, *tail;
};

struct db_pollh {
	uv_poll_t h;
	struct db_conn *conn; /* NULL once detached */
	db_pool_t *pool;
};

struct db_conn {
	db_pool_t *pool;
	PGconn *pg;
	struct db_pollh *poll;
	int poll_fd;
	int poll_events;
	uv_timer_t timer;
	enum c_state state;
	int is_listen;
	int backoff_ms;
	struct db_query *cur;
	PGresult *cur_res;
	int cur_failed;    /* an error result was seen for cur */
	db_tx_t *tx;       /* pinned transaction, if any */
	struct qlist priv; /* statements for the pinned tx, or LISTENs */
};

struct db_tx {
	db_pool_t *pool;
	struct db_conn *conn;
	int poisoned;
	int dead; /* connection lost */
	int finishing;
};

struct listener {
	char *channel;
	db_notify_cb cb;
	void *arg;
};

struct db_pool {
	uv_loop_t *loop;
	char *conninfo;
	int nconns; /* query connections; conns[nconns] is the listen connection */
	struct db_conn *conns;
	struct qlist pending;
	struct listener *listeners;
	int nlisteners;
	db_state_cb state_cb;
	void *state_arg;
	int connected;
	int closing;
	int open_handles;
	void (*on_closed)(void *);
	void *closed_arg;
	uv_idle_t idle; /* runs deferred callbacks (failures found while queueing) */
	struct qlist deferred;
};

static void conn_connect(struct db_conn *c);
static void conn_timer_cb(uv_timer_t *t);
static void conn_kick(struct db_conn *c);
static void pool_kick(db_pool_t *p);

/* ---- parameters ---- */

void db_params_init(struct db_params *p) { memset(p, 0, sizeof *p); }

/* A parameter that does not fit is never dropped silently: the statement
 * would run with its later placeholders unbound, or fail far from the cause. */
static int param_add(struct db_params *p, const char *v, int len, int format)
{
	if (p->n >= DB_MAX_PARAMS || len < 0) {
		p->err = AT_ERANGE;
		return AT_ERANGE;
	}
	p->values[p->n] = v;
	p->lengths[p->n] = len;
	p->formats[p->n] = format;
	p->n++;
	return 0;
}

int db_param_text(struct db_params *p, const char *v) { return param_add(p, v, 0, 0); }

int db_param_bin(struct db_params *p, const void *data, size_t len)
{
	return param_add(p, data, len > INT_MAX ? -1 : (int)len, 1);
}

const char *db_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

/* ---- query objects ---- */

static void qlist_push(struct qlist *l, struct db_query *q)
{
	q->next = NULL;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
}

static struct db_query *qlist_pop(struct qlist *l)
{
	struct db_query *q = l->head;
	if (q) {
		l->head = q->next;
		if (!l->head)
			l->tail = NULL;
		q->next = NULL;
	}
	return q;
}

static void query_free(struct db_query *q)
{
	if (!q)
		return;
	free(q->sql);
	for (int i = 0; i < q->nparams; i++)
		free(q->values[i]);
	free(q->values);
	free(q->lengths);
	free(q->formats);
	free(q);
}

/* Copies sql and parameters: the caller's buffers may go away before the
 * statement is sent. */
static struct db_query *query_new_argv(enum q_kind kind, const char *sql, int n, const char *const *values,
				       const int *lengths, const int *formats)
{
	struct db_query *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->kind = kind;
	q->sql = strdup(sql);
	if (!q->sql)
		goto fail;
	if (n > 0) {
		q->values = calloc((size_t)n, sizeof *q->values);
		q->lengths = calloc((size_t)n, sizeof *q->lengths);
		q->formats = calloc((size_t)n, sizeof *q->formats);
		if (!q->values || !q->lengths || !q->formats)
			goto fail;
		q->nparams = n;
		for (int i = 0; i < n; i++) {
			const char *v = values[i];
			if (!v)
				continue;
			int bin = formats && formats[i];
			size_t len = bin ? (size_t)lengths[i] : strlen(v);
			q->values[i] = malloc(len + 1);
			if (!q->values[i])
				goto fail;
			memcpy(q->values[i], v, len);
			q->values[i][len] = 0;
			q->lengths[i] = (int)len;
			q->formats[i] = bin;
		}
	}
	return q;
fail:
	query_free(q);
	return NULL;
}

static struct db_query *query_new(enum q_kind kind, const char *sql, const struct db_params *params)
{
	if (!params)
		return query_new_argv(kind, sql, 0, NULL, NULL, NULL);
	return query_new_argv(kind, sql, params->n, params->values, params->lengths, params->formats);
}

/* Deliver a result to the statement's owner, then free the statement. */
static void query_finish(struct db_query *q, int status, PGresult *res)
{
	if (q->kind == Q_BEGIN) {
		db_tx_t *tx = q->tx;
		if (status < 0) {
			free(tx);
			q->tx_cb(q->arg, status, NULL);
		} else {
			q->tx_cb(q->arg, 0, tx);
		}
	} else if (q->kind == Q_COMMIT || q->kind == Q_ROLLBACK) {
		if (q->cb)
			q->cb(q->arg, status, res);
		free(q->tx);
	} else if (q->cb) {
		q->cb(q->arg, status, res);
	}
	query_free(q);
}

/* Failures found while the caller is still inside a db_* call are delivered
 * from an idle callback, so no callback runs re-entrantly. */
static void idle_cb(uv_idle_t *h)
{
	db_pool_t *p = h->data;
	struct db_query *q;
	struct qlist l = p->deferred;
	p->deferred.head = p->deferred.tail = NULL;
	uv_idle_stop(&p->idle);
	while ((q = qlist_pop(&l)) != NULL)
		query_finish(q, AT_EUNAVAILABLE, NULL);
}

static void defer_fail(db_pool_t *p, struct db_query *q)
{
	qlist_push(&p->deferred, q);
	uv_idle_start(&p->idle, idle_cb);
}

/* ---- connection state ---- */

static void pool_set_connected(db_pool_t *p)
{
	int n = 0;
	for (int i = 0; i < p->nconns; i++)
		n += p->conns[i].state == C_READY;
	int was = p->connected > 0;
	p->connected = n;
	if (was != (n > 0) && p->state_cb)
		p->state_cb(p->state_arg, n > 0);
}

static int pool_any_hope(db_pool_t *p)
{
	for (int i = 0; i < p->nconns; i++)
		if (p->conns[i].state != C_DOWN)
			return 1;
	return 0;
}

static void pool_handle_closed(db_pool_t *p);

static void pollh_close_cb(uv_handle_t *h)
{
	struct db_pollh *ph = (struct db_pollh *)h;
	db_pool_t *p = ph->pool;
	free(ph);
	pool_handle_closed(p);
}

static void conn_drop_poll(struct db_conn *c)
{
	if (!c->poll)
		return;
	c->poll->conn = NULL;
	uv_poll_stop(&c->poll->h);
	c->pool->open_handles++;
	uv_close((uv_handle_t *)&c->poll->h, pollh_close_cb);
	c->poll = NULL;
	c->poll_fd = -1;
}

static void conn_poll_cb(uv_poll_t *h, int status, int events);

static void conn_watch(struct db_conn *c, int events)
{
	int fd = PQsocket(c->pg);
	if (c->poll && c->poll_fd != fd)
		conn_drop_poll(c);
	if (!c->poll) {
		c->poll = calloc(1, sizeof *c->poll);
		if (!c->poll) {
			log_error("db: out of memory");
			return;
		}
		c->poll->conn = c;
		c->poll->pool = c->pool;
		if (uv_poll_init(c->pool->loop, &c->poll->h, fd) < 0) {
			log_error("db: uv_poll_init failed on fd %d", fd);
			free(c->poll);
			c->poll = NULL;
			return;
		}
		c->poll->h.data = c->poll;
		c->poll_fd = fd;
		c->poll_events = 0;
	}
	if (events != c->poll_events || !uv_is_active((uv_handle_t *)&c->poll->h)) {
		uv_poll_start(&c->poll->h, events, conn_poll_cb);
		c->poll_events = events;
	}
}

/* The connection is gone: fail what it was doing, schedule a reconnect. */
static void conn_lost(struct db_conn *c, const char *why)
{
	db_pool_t *p = c->pool;
	int was_ready = c->state == C_READY;
	if (was_ready)
		log_warn("db: connection lost: %s", why);
	else
		log_debug("db: connect failed: %s", why);
	conn_drop_poll(c);
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->state = C_DOWN;
	if (c->cur_res) {
		PQclear(c->cur_res);
		c->cur_res = NULL;
	}
	struct db_query *cur = c->cur;
	c->cur = NULL;
	if (c->tx) {
		c->tx->dead = 1;
		c->tx->conn = NULL;
		c->tx = NULL;
	}
	struct qlist priv = c->priv;
	c->priv.head = c->priv.tail = NULL;
	pool_set_connected(p);

	if (cur && cur->kind != Q_LISTEN)
		query_finish(cur, AT_EUNAVAILABLE, NULL);
	else
		query_free(cur);
	struct db_query *q;
	while ((q = qlist_pop(&priv)) != NULL) {
		if (q->kind == Q_LISTEN)
			query_free(q);
		else
			query_finish(q, AT_EUNAVAILABLE, NULL);
	}
	/* With no connection left that could come up soon, queued statements
	 * fail now rather than hang. */
	if (!p->closing && !c->is_listen && !pool_any_hope(p)) {
		struct qlist pend = p->pending;
		p->pending.head = p->pending.tail = NULL;
		while ((q = qlist_pop(&pend)) != NULL)
			query_finish(q, AT_EUNAVAILABLE, NULL);
	}
	if (p->closing)
		return;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : DB_BACKOFF_MIN_MS;
	if (c->backoff_ms > DB_BACKOFF_MAX_MS)
		c->backoff_ms = DB_BACKOFF_MAX_MS;
	uv_timer_start(&c->timer, conn_timer_cb, (uint64_t)c->backoff_ms, 0);
}

static void conn_ready(struct db_conn *c)
{
	db_pool_t *p = c->pool;
	c->state = C_READY;
	c->backoff_ms = 0;
	PQsetnonblocking(c->pg, 1);
	if (c->is_listen) {
		for (int i = 0; i < p->nlisteners; i++) {
			char *ident =
				PQescapeIdentifier(c->pg, p->listeners[i].channel, strlen(p->listeners[i].channel));
			if (!ident)
				continue;
			char sql[256];
			snprintf(sql, sizeof sql, "LISTEN %s", ident);
			PQfreemem(ident);
			struct db_query *q = query_new(Q_LISTEN, sql, NULL);
			if (q)
				qlist_push(&c->priv, q);
		}
		/* Tell subscribers they may have missed notifications while down. */
		for (int i = 0; i < p->nlisteners; i++)
			p->listeners[i].cb(p->listeners[i].arg, NULL, NULL);
	} else {
		pool_set_connected(p);
	}
	log_debug("db: connection ready");
	conn_kick(c);
	pool_kick(p);
}

static void conn_continue_connect(struct db_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING: conn_watch(c, UV_READABLE); break;
	case PGRES_POLLING_WRITING: conn_watch(c, UV_WRITABLE); break;
	case PGRES_POLLING_OK:
		conn_watch(c, UV_READABLE);
		conn_ready(c);
		break;
	default: conn_lost(c, PQerrorMessage(c->pg)); break;
	}
}

/* NOTICEs (e.g. "relation already exists, skipping") are not errors; keep them out of stderr. */
static void notice_quiet(void *arg, const char *message) { log_debug("db: %s", message); }

static void conn_connect(struct db_conn *c)
{
	if (c->pool->closing)
		return;
	c->state = C_CONNECTING;
	c->pg = PQconnectStart(c->pool->conninfo);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_lost(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(c->pg, notice_quiet, NULL);
	conn_continue_connect(c);
}

/* Timer callbacks get the timer; the conn is its data. */
static void conn_timer_cb(uv_timer_t *t) { conn_connect(t->data); }

/* ---- statements ---- */

static void conn_send(struct db_conn *c, struct db_query *q)
{
	c->cur = q;
	c->cur_failed = 0;
	int ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, (const char *const *)q->values, q->lengths,
				   q->formats, q->binary);
	if (!ok) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	int f = PQflush(c->pg);
	if (f < 0) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	conn_watch(c, f ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

/* Give an idle connection its next statement: its pinned/private queue first. */
static void conn_kick(struct db_conn *c)
{
	if (c->state != C_READY || c->cur)
		return;
	struct db_query *q = qlist_pop(&c->priv);
	if (!q && !c->tx && !c->is_listen) {
		q = qlist_pop(&c->pool->pending);
		if (q && q->kind == Q_BEGIN) {
			c->tx = q->tx;
			q->tx->conn = c;
		}
	}
	if (q)
		conn_send(c, q);
}

static void pool_kick(db_pool_t *p)
{
	for (int i = 0; i < p->nconns && p->pending.head; i++)
		conn_kick(&p->conns[i]);
}

static void conn_result_done(struct db_conn *c)
{
	struct db_query *q = c->cur;
	PGresult *res = c->cur_res;
	c->cur = NULL;
	c->cur_res = NULL;
	int status = 0;
	if (!res)
		status = AT_EDB;
	else {
		ExecStatusType st = PQresultStatus(res);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
			status = AT_EDB;
	}
	if (q->kind == Q_TXSTMT && status < 0 && q->tx)
		q->tx->poisoned = 1;
	if (q->kind == Q_BEGIN && status < 0) {
		c->tx = NULL;
	}
	if (q->kind == Q_COMMIT || q->kind == Q_ROLLBACK) {
		c->tx = NULL;
		/* A COMMIT of an aborted transaction reports success as ROLLBACK. */
		if (q->kind == Q_COMMIT && status == 0 && res && strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
			status = AT_EDB;
	}
	if (q->kind == Q_LISTEN) {
		if (status < 0)
			log_error("db: %s failed: %s", q->sql, res ? PQresultErrorMessage(res) : "?");
		query_free(q);
	} else {
		if (status < 0 && res && log_enabled(LOG_DEBUG))
			log_debug("db: statement failed: %s", PQresultErrorMessage(res));
		query_finish(q, status, res);
	}
	if (res)
		PQclear(res);
}

static void conn_drain_notifies(struct db_conn *c)
{
	db_pool_t *p = c->pool;
	PGnotify *n;
	while ((n = PQnotifies(c->pg)) != NULL) {
		for (int i = 0; i < p->nlisteners; i++)
			if (strcmp(p->listeners[i].channel, n->relname) == 0)
				p->listeners[i].cb(p->listeners[i].arg, n->relname, n->extra);
		PQfreemem(n);
	}
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
	struct db_pollh *ph = h->data;
	struct db_conn *c = ph->conn;
	if (!c)
		return;
	if (c->state == C_CONNECTING) {
		conn_continue_connect(c);
		return;
	}
	if (status < 0) {
		conn_lost(c, uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE) {
		int f = PQflush(c->pg);
		if (f < 0) {
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		if (f == 0)
			conn_watch(c, UV_READABLE);
	}
	if (!(events & UV_READABLE))
		return;
	if (!PQconsumeInput(c->pg)) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	while (c->cur && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			conn_result_done(c);
			if (c->state != C_READY)
				return;
			break;
		}
		/* Keep the last result (an error, if any, wins). */
		ExecStatusType st = PQresultStatus(r);
		int is_err = st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK;
		if (c->cur_res && (c->cur_failed && !is_err)) {
			PQclear(r);
			continue;
		}
		if (c->cur_res)
			PQclear(c->cur_res);
		c->cur_res = r;
		c->cur_failed |= is_err;
	}
	conn_drain_notifies(c);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	if (!c->cur) {
		conn_kick(c);
		if (!c->cur && !c->tx)
			pool_kick(c->pool);
	}
}

/* ---- public API ---- */

int db_pool_new(uv_loop_t *loop, const char *conninfo, int nconns, db_pool_t **out)
{
	if (nconns < 1 || nconns > 64)
		return AT_EINVAL;
	db_pool_t *p = calloc(1, sizeof *p);
	if (!p)
		return AT_ENOMEM;
	p->loop = loop;
	p->conninfo = strdup(conninfo ? conninfo : "");
	p->nconns = nconns;
	p->conns = calloc((size_t)nconns + 1, sizeof *p->conns);
	if (!p->conninfo || !p->conns) {
		free(p->conninfo);
		free(p->conns);
		free(p);
		return AT_ENOMEM;
	}
	uv_idle_init(loop, &p->idle);
	p->idle.data = p;
	p->open_handles = 1;
	for (int i = 0; i <= nconns; i++) {
		struct db_conn *c = &p->conns[i];
		c->pool = p;
		c->poll_fd = -1;
		c->is_listen = i == nconns;
		uv_timer_init(loop, &c->timer);
		c->timer.data = c;
		p->open_handles++;
	}
	/* Query connections connect now; the listen one only once someone listens. */
	for (int i = 0; i < nconns; i++)
		conn_connect(&p->conns[i]);
	*out = p;
	return 0;
}

void db_pool_on_state(db_pool_t *pool, db_state_cb cb, void *arg)
{
	pool->state_cb = cb;
	pool->state_arg = arg;
}

int db_pool_connected(const db_pool_t *pool) { return pool->connected; }

static int pool_accepting(db_pool_t *p)
{
	if (p->closing)
		return AT_ECANCELLED;
	if (!pool_any_hope(p))
		return AT_EUNAVAILABLE;
	return 0;
}

/* Queue a plain statement built by the caller (consumes q, even on failure). */
static int pool_enqueue(db_pool_t *pool, struct db_query *q, db_cb cb, void *arg)
{
	int rc = pool_accepting(pool);
	if (rc < 0 || !q) {
		query_free(q);
		return rc < 0 ? rc : AT_ENOMEM;
	}
	q->cb = cb;
	q->arg = arg;
	qlist_push(&pool->pending, q);
	pool_kick(pool);
	return 0;
}

int db_query(db_pool_t *pool, const char *sql, const struct db_params *params, db_cb cb, void *arg)
{
	if (params && params->err)
		return params->err;
	return pool_enqueue(pool, query_new(Q_PLAIN, sql, params), cb, arg);
}

int db_query_argv(db_pool_t *pool, const char *sql, int n, const char *const *values, const int *lengths,
		  const int *formats, db_cb cb, void *arg)
{
	if (n < 0 || n > 65535)
		return AT_EINVAL;
	return pool_enqueue(pool, query_new_argv(Q_PLAIN, sql, n, values, lengths, formats), cb, arg);
}

int db_query_binary(db_pool_t *pool, const char *sql, const struct db_params *params, db_cb cb, void *arg)
{
	if (params && params->err)
		return params->err;
	struct db_query *q = query_new(Q_PLAIN, sql, params);
	if (q)
		q->binary = 1;
	return pool_enqueue(pool, q, cb, arg);
}

int db_tx_begin(db_pool_t *pool, db_tx_cb cb, void *arg)
{
	int rc = pool_accepting(pool);
	if (rc < 0)
		return rc;
	struct db_query *q = query_new(Q_BEGIN, "BEGIN", NULL);
	db_tx_t *tx = calloc(1, sizeof *tx);
	if (!q || !tx) {
		query_free(q);
		free(tx);
		return AT_ENOMEM;
	}
	tx->pool = pool;
	q->tx = tx;
	q->tx_cb = cb;
	q->arg = arg;
	qlist_push(&pool->pending, q);
	pool_kick(pool);
	return 0;
}

static int tx_push(db_tx_t *tx, enum q_kind kind, const char *sql, const struct db_params *params, db_cb cb, void *arg)
{
	if (tx->finishing)
		return AT_EINVAL;
	if (params && params->err)
		return params->err;
	struct db_query *q = query_new(kind, sql, params);
	if (!q)
		return AT_ENOMEM;
	q->cb = cb;
	q->arg = arg;
	q->tx = tx;
	if (kind == Q_COMMIT || kind == Q_ROLLBACK)
		tx->finishing = 1;
	if (tx->dead || !tx->conn) {
		/* The connection died under the transaction: report it from the loop. */
		defer_fail(tx->pool, q);
		return 0;
	}
	qlist_push(&tx->conn->priv, q);
	conn_kick(tx->conn);
	return 0;
}

int db_tx_query(db_tx_t *tx, const char *sql, const struct db_params *params, db_cb cb, void *arg)
{
	return tx_push(tx, Q_TXSTMT, sql, params, cb, arg);
}

int db_tx_commit(db_tx_t *tx, db_cb cb, void *arg) { return tx_push(tx, Q_COMMIT, "COMMIT", NULL, cb, arg); }

int db_tx_rollback(db_tx_t *tx, db_cb cb, void *arg) { return tx_push(tx, Q_ROLLBACK, "ROLLBACK", NULL, cb, arg); }

int db_listen(db_pool_t *pool, const char *channel, db_notify_cb cb, void *arg)
{
	if (pool->closing)
		return AT_ECANCELLED;
	struct listener *l = realloc(pool->listeners, (size_t)(pool->nlisteners + 1) * sizeof *l);
	if (!l)
		return AT_ENOMEM;
	pool->listeners = l;
	l = &pool->listeners[pool->nlisteners];
	l->channel = strdup(channel);
	if (!l->channel)
		return AT_ENOMEM;
	l->cb = cb;
	l->arg = arg;
	pool->nlisteners++;
	struct db_conn *c = &pool->conns[pool->nconns];
	if (c->state == C_READY) {
		char *ident = PQescapeIdentifier(c->pg, channel, strlen(channel));
		if (!ident)
			return AT_ENOMEM;
		char sql[256];
		snprintf(sql, sizeof sql, "LISTEN %s", ident);
		PQfreemem(ident);
		struct db_query *q = query_new(Q_LISTEN, sql, NULL);
		if (!q)
			return AT_ENOMEM;
		qlist_push(&c->priv, q);
		conn_kick(c);
	} else if (c->state == C_DOWN && !uv_is_active((uv_handle_t *)&c->timer)) {
		conn_connect(c);
	}
	return 0;
}

/* ---- shutdown ---- */

static void pool_free(db_pool_t *p)
{
	for (int i = 0; i < p->nlisteners; i++)
		free(p->listeners[i].channel);
	free(p->listeners);
	free(p->conns);
	free(p->conninfo);
	void (*cb)(void *) = p->on_closed;
	void *arg = p->closed_arg;
	free(p);
	if (cb)
		cb(arg);
}

static void pool_handle_closed(db_pool_t *p)
{
	if (--p->open_handles == 0 && p->closing)
		pool_free(p);
}

static void timer_close_cb(uv_handle_t *h)
{
	struct db_conn *c = h->data;
	pool_handle_closed(c->pool);
}

static void idle_close_cb(uv_handle_t *h) { pool_handle_closed(h->data); }

void db_pool_close(db_pool_t *p, void (*on_closed)(void *arg), void *arg)
{
	if (!p)
		return;
	p->closing = 1;
	p->on_closed = on_closed;
	p->closed_arg = arg;
	struct db_query *q;
	for (int i = 0; i <= p->nconns; i++) {
		struct db_conn *c = &p->conns[i];
		conn_drop_poll(c);
		if (c->pg) {
			PQfinish(c->pg);
			c->pg = NULL;
		}
		c->state = C_DOWN;
		if (c->cur_res)
			PQclear(c->cur_res);
		c->cur_res = NULL;
		if (c->cur)
			qlist_push(&p->deferred, c->cur);
		c->cur = NULL;
		while ((q = qlist_pop(&c->priv)) != NULL)
			qlist_push(&p->deferred, q);
		uv_timer_stop(&c->timer);
		uv_close((uv_handle_t *)&c->timer, timer_close_cb);
	}
	while ((q = qlist_pop(&p->pending)) != NULL)
		qlist_push(&p->deferred, q);
	/* Everything still owed a callback hears AT_ECANCELLED now, before the handles close. */
	struct qlist l = p->deferred;
	p->deferred.head = p->deferred.tail = NULL;
	while ((q = qlist_pop(&l)) != NULL) {
		if (q->kind == Q_LISTEN)
			query_free(q);
		else
			query_finish(q, AT_ECANCELLED, NULL);
	}
	uv_idle_stop(&p->idle);
	uv_close((uv_handle_t *)&p->idle, idle_close_cb);
}

/* ---- blocking helpers ---- */

PGconn *db_connect_blocking(const char *conninfo, int timeout_ms)
{
	int waited = 0, delay = 50;
	for (;;) {
		PGconn *c = PQconnectdb(conninfo ? conninfo : "");
		if (c && PQstatus(c) == CONNECTION_OK) {
			PQsetNoticeProcessor(c, notice_quiet, NULL);
			return c;
		}
		if (waited >= timeout_ms) {
			log_error("db: cannot connect: %s", c ? PQerrorMessage(c) : "out of memory");
			PQfinish(c);
			return NULL;
		}
		PQfinish(c);
		usleep((useconds_t)delay * 1000);
		waited += delay;
		if (delay < 1000)
			delay *= 2;
	}
}

static int exec_ok(PGconn *conn, const char *sql, const char *what)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		log_error("db: %s: %s", what, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : AT_EDB;
}

static int is_migration(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 4 && d->d_name[0] >= '0' && d->d_name[0] <= '9' && strcmp(d->d_name + n - 4, ".sql") == 0;
}

static char *read_file(const char *path)
{
	struct at_buf b;
	at_buf_init(&b, (size_t)16 << 20);
	if (at_buf_add_file(&b, path) < 0) {
		at_buf_free(&b);
		return NULL;
	}
	return b.data ? at_buf_steal(&b, NULL) : strdup("");
}

int db_migrate(PGconn *conn, const char *sql_dir)
{
	struct dirent **names = NULL;
	int n = scandir(sql_dir, &names, is_migration, alphasort);
	if (n < 0) {
		log_error("db: cannot read migrations in %s", sql_dir);
		return AT_EIO;
	}
	int rc = 0, applied = 0;
	/* One migrator at a time: a second process starting at once waits here,
	 * then sees the versions the first one recorded. */
	rc = exec_ok(conn, "SELECT pg_advisory_lock(7316001)", "migration lock");
	if (rc < 0)
		goto out;
	rc = exec_ok(conn,
		     "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
		     "applied_at timestamptz NOT NULL DEFAULT now())",
		     "schema_migrations");
	if (rc < 0)
		goto unlock;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		const char *pv[1] = {name};
		PGresult *r = PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, pv,
					   NULL, NULL, 0);
		int have = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
		int bad = PQresultStatus(r) != PGRES_TUPLES_OK;
		PQclear(r);
		if (bad) {
			rc = AT_EDB;
			goto unlock;
		}
		if (have)
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", sql_dir, name);
		char *text = read_file(path);
		if (!text) {
			log_error("db: cannot read %s", path);
			rc = AT_EIO;
			goto unlock;
		}
		rc = exec_ok(conn, "BEGIN", "begin");
		if (rc == 0)
			rc = exec_ok(conn, text, name);
		free(text);
		if (rc == 0) {
			r = PQexecParams(conn, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL, pv, NULL,
					 NULL, 0);
			rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : AT_EDB;
			PQclear(r);
		}
		if (rc == 0)
			rc = exec_ok(conn, "COMMIT", "commit");
		if (rc < 0) {
			PQclear(PQexec(conn, "ROLLBACK"));
			log_error("db: migration %s failed", name);
			goto unlock;
		}
		log_info("db: applied migration %s", name);
		applied++;
	}
unlock:
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock(7316001)"));
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc < 0 ? rc : applied;
}
