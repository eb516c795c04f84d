/*
 * limit.h — per-client rate limits on the node's public POST endpoints
 * (lib/ratelimit.h buckets, one table per endpoint, on the loop thread).
 */
#ifndef ATELIER_SERVE_LIMIT_H
#define ATELIER_SERVE_LIMIT_H

#include "buf.h"
#include "http.h"

struct serve_app;

enum limit_endpoint { LIMIT_STYLIZE, LIMIT_CONTRIBUTE, LIMIT_PUBLISH, LIMIT_N };

/* Create the tables from app->cfg (a rate of 0 leaves that endpoint open). */
int limit_init(struct serve_app *app) AT_MUST_CHECK;
void limit_free(struct serve_app *app);
/* At the top of a handler: 0 to go on, or it answered 429 with Retry-After
 * and returns AT_ERATELIMITED. */
int limit_admit(struct serve_app *app, http_req_t *req, enum limit_endpoint ep);
int limit_metrics(struct serve_app *app, struct at_buf *b) AT_MUST_CHECK;

#endif
