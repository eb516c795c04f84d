/*
 * app.h — the state of one atelierd process, shared by its subsystems. One
 * instance lives in main.c for the life of the loop; subsystems borrow it.
 */
#ifndef ATELIERD_APP_H
#define ATELIERD_APP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "http.h"

struct auth;
struct events;
struct scheduler;
struct supervisor;
struct longpoll;
struct artifact_store;
struct notify;

/* Daemon settings (table in main.c). */
struct settings {
	const char *database_url;
	const char *host;
	int port;
	size_t max_body;
	double http_idle_timeout;
	size_t max_pixels;
	int image_size;
	double holdout_fraction;
	double min_ink;
	double max_ink;
	int max_sketches_per_contributor_day; /* 0: no cap */
	int near_duplicate_distance;          /* dHash bits; -1: no near-duplicate check */
	int node_heartbeat_days;              /* node_heartbeats history kept (nodes.c prunes) */
	int db_conns;
	const char *sql_dir;
	const char *artifacts;
	int local_workers;
	const char *worker_bin;
	int no_migrate;
	int tick_ms;
	/* alert webhooks (notify.c) */
	const char *webhook_url; /* comma-separated, up to 8 */
	const char *webhook_secret_file;
	const char *webhook_events; /* comma-separated kinds; empty = all */
	double webhook_timeout;
	int webhook_attempts;
	double webhook_backoff;
	int webhook_queue;
	int webhook_retention_days;
	int node_stale_s;
};

struct ingest_stats {
	uint64_t accepted[2]; /* by domain: 0 sketch, 1 painting */
	uint64_t duplicate[2];
	uint64_t rejected_unsupported;
	uint64_t rejected_corrupt;
	uint64_t rejected_too_big;
	uint64_t rejected_pixels;
	uint64_t rejected_ink;
	uint64_t rejected_cap; /* a contributor over --max-sketches-per-contributor-day */
	uint64_t near_duplicate;
	uint64_t rejected_other;
	uint64_t db_errors;
	double normalize_seconds;
};

/* Uploads waiting for a group commit (ingest.c). */
struct upload;
struct ingest_queue {
	struct upload *head, *tail;
	int queued;
	int inflight;
};

struct app {
	uv_loop_t *loop;
	struct settings cfg;
	db_pool_t *db;
	http_server_t *http;
	struct auth *auth;
	struct scheduler *scheduler;
	struct supervisor *supervisor;
	struct longpoll *longpoll;        /* channel long-polls (longpoll.c) */
	struct artifact_store *artifacts; /* cfg.artifacts, opened at start */
	struct events *events;            /* the Server-Sent Events hub (events.c) */
	struct notify *notify;            /* alert webhooks (notify.c) */
	/* The database's part of /metrics (atelier_prometheus()), kept a few
	 * seconds so frequent scrapes cost one query. */
	char *metrics_sql;
	uint64_t metrics_sql_ms;
	struct http_route *routes; /* every subsystem's table, concatenated */
	size_t nroutes;
	struct ingest_stats ingest;
	struct ingest_queue ingest_q;
	uint64_t started_at;
	int shutting_down;
};

/* The base route table (routes.c); main.c appends each subsystem's. */
extern const struct http_route app_routes[];
extern const size_t app_nroutes;
extern const struct http_tag app_tags[]; /* for the OpenAPI document */
extern const size_t app_ntags;

#endif
