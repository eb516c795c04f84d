/*
 * registry.h — model registry, channels, long-poll hub, artifact downloads
 * and serving-node heartbeats (see registry.c). The promotion logic itself
 * (register, move, roll back; the ledger) is in sql/004_registry.sql so the
 * promote job and the HTTP API share it.
 */
#ifndef ATELIERD_REGISTRY_H
#define ATELIERD_REGISTRY_H

#include "app.h"
#include "buf.h"

struct registry;

int registry_start(struct app *app, struct registry **out) AT_MUST_CHECK;
/* Answers every held long-poll (304) so the HTTP server can close. */
void registry_stop(struct registry *r);
void registry_free(struct registry *r);
int registry_metrics(const struct registry *r, struct at_buf *b) AT_MUST_CHECK;

extern const struct http_route registry_routes[];
extern const size_t registry_nroutes;

#endif
