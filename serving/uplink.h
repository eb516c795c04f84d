/*
 * uplink.h — the thread that talks to atelierd on the node's own initiative:
 * a heartbeat every cfg.heartbeat_interval (POST /v1/nodes/heartbeat: model
 * version in service, request and error counts, recent p50/p95, last swap
 * error), and draining the contribution spool, oldest first, to
 * POST /v1/sketches with exponential backoff while atelierd is unreachable.
 * A heartbeat that gets through ends the backoff: atelierd is back, so the
 * spool is retried at once rather than after the rest of the wait.
 *
 * Answers to a spooled contribution: 2xx → delivered, file removed; 400,
 * 413, 415, 422 and other 4xx about the content → rejected for good, file
 * removed (logged); 401, 403, 404, 408, 409, 429, 5xx or no answer → kept,
 * retried later (they say nothing about the sketch itself).
 */
#ifndef SERVE_UPLINK_H
#define SERVE_UPLINK_H

#include "buf.h"
#include "err.h"

struct serve_app;
struct uplink;

int uplink_start(struct serve_app *app, struct uplink **out) AT_MUST_CHECK;
/* A new file is in the spool (any thread). NULL is a no-op. */
void uplink_notify(struct uplink *u);
void uplink_stop(struct uplink *u);
/* Stops, joins and frees; NULL is a no-op. */
void uplink_free(struct uplink *u);
int uplink_metrics(struct uplink *u, struct at_buf *b) AT_MUST_CHECK;

#endif
