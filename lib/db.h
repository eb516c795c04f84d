/*
 * db.h — asynchronous PostgreSQL on the libuv loop (libpq, non-blocking).
 *
 * A pool holds N query connections plus one LISTEN connection, each driven by
 * a uv_poll on PQsocket(). Connections (re)connect with exponential backoff;
 * a query queued while no connection is up waits (bounded) or fails with
 * AT_EUNAVAILABLE. All SQL is parameterised (PQsendQueryParams).
 *
 * Callbacks: status 0 means the statement succeeded and res holds its result
 * (PGRES_TUPLES_OK / PGRES_COMMAND_OK); AT_EDB means PostgreSQL returned an
 * error (res holds it: db_sqlstate(res), PQresultErrorMessage(res));
 * AT_EUNAVAILABLE means the connection was lost or not up (res is NULL).
 * res is borrowed until the callback returns. A call that fails (returns < 0)
 * never invokes its callback.
 */
#ifndef ATELIER_DB_H
#define ATELIER_DB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <uv.h>

#include "err.h"

typedef struct db_pool db_pool_t;
typedef struct db_tx db_tx_t;

typedef void (*db_cb)(void *arg, int status, PGresult *res);
typedef void (*db_tx_cb)(void *arg, int status, db_tx_t *tx);
typedef void (*db_notify_cb)(void *arg, const char *channel, const char *payload);
typedef void (*db_state_cb)(void *arg, int connected);

#define DB_MAX_PARAMS 16
struct db_params {
	int n;
	int err; /* AT_ERANGE once a parameter did not fit; a query given these params fails with it */
	const char *values[DB_MAX_PARAMS];
	int lengths[DB_MAX_PARAMS]; /* used for binary params only */
	int formats[DB_MAX_PARAMS]; /* 0 text, 1 binary */
};

/* Text parameters from a NULL-free list; binary with db_param_bin.
 *
 * A sticky error, and on purpose not AT_MUST_CHECK: a parameter past
 * DB_MAX_PARAMS (or a binary one over INT_MAX bytes) returns AT_ERANGE and
 * poisons p, and db_query / db_query_binary / db_tx_query given p then return
 * AT_ERANGE and queue nothing. Those are AT_MUST_CHECK, so a statement's one
 * check covers all its parameters. A check at each add would be a branch that
 * cannot run at every call site (the count is fixed by the SQL text beside
 * it), and gcc's warn_unused_result is not silenced by a (void) cast, so
 * callers could not chain the adds. The return value is for callers that
 * want to stop early (tests, a loop over a list). More than 16: db_query_argv. */
void db_params_init(struct db_params *p);
int db_param_text(struct db_params *p, const char *v); /* v may be NULL = SQL NULL */
int db_param_bin(struct db_params *p, const void *data, size_t len);

/* conninfo: a libpq URL or key=value string; NULL or "" = libpq's PG* env. */
int db_pool_new(uv_loop_t *loop, const char *conninfo, int nconns, db_pool_t **out) AT_MUST_CHECK;
/* Closes every connection and handle; the pool is freed once closed. Pending
 * queries get AT_ECANCELLED. on_closed (may be NULL) runs after the last handle closed. */
void db_pool_close(db_pool_t *pool, void (*on_closed)(void *arg), void *arg);

/* Called whenever the number of live query connections goes 0 -> >0 or >0 -> 0. */
void db_pool_on_state(db_pool_t *pool, db_state_cb cb, void *arg);
/* Number of query connections currently usable. */
int db_pool_connected(const db_pool_t *pool);

/* Queue one parameterised statement. params may be NULL. */
int db_query(db_pool_t *pool, const char *sql, const struct db_params *params, db_cb cb, void *arg) AT_MUST_CHECK;

/* Any number of parameters (up to 65535): values[i] NULL = SQL NULL; lengths
 * and formats may be NULL (all text). Copied before return. */
int db_query_argv(db_pool_t *pool, const char *sql, int n, const char *const *values, const int *lengths,
		  const int *formats, db_cb cb, void *arg) AT_MUST_CHECK;

/* The same, asking for results in binary format (e.g. to read bytea without hex). */
int db_query_binary(db_pool_t *pool, const char *sql, const struct db_params *params, db_cb cb,
		    void *arg) AT_MUST_CHECK;

/* Transactions pin one connection from BEGIN to COMMIT/ROLLBACK.
 * db_tx_begin's callback gets the tx (status 0) or an error. Inside, queue
 * statements with db_tx_query; finish with db_tx_commit or db_tx_rollback
 * (the tx is freed after their callback returns). If a statement fails, the
 * tx is poisoned: later statements fail with AT_EDB and commit rolls back. */
int db_tx_begin(db_pool_t *pool, db_tx_cb cb, void *arg) AT_MUST_CHECK;
int db_tx_query(db_tx_t *tx, const char *sql, const struct db_params *params, db_cb cb, void *arg) AT_MUST_CHECK;
int db_tx_commit(db_tx_t *tx, db_cb cb, void *arg) AT_MUST_CHECK;
int db_tx_rollback(db_tx_t *tx, db_cb cb, void *arg) AT_MUST_CHECK;

/* LISTEN on a channel over the pool's dedicated listen connection; the
 * subscription survives reconnects (re-issued after each connect, and the
 * callback also runs with channel=NULL after a reconnect so the caller can
 * re-scan for anything it missed). */
int db_listen(db_pool_t *pool, const char *channel, db_notify_cb cb, void *arg) AT_MUST_CHECK;

/* SQLSTATE of an error result ("23505"), or "" */
const char *db_sqlstate(const PGresult *res);

/* ---- blocking helpers for CLIs, workers, migrations and tests ---- */

/* Connect synchronously (retrying for up to timeout_ms). Returns NULL and logs on failure. */
PGconn *db_connect_blocking(const char *conninfo, int timeout_ms);
/* Apply sql/NNN_*.sql migrations not yet recorded, each in its own
 * transaction, under an advisory lock so concurrent starters serialise. */
int db_migrate(PGconn *conn, const char *sql_dir) AT_MUST_CHECK;

#endif
