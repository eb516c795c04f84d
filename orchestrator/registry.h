/*
 * registry.h — model registry routes: models, versions, the evaluation
 * gallery, the promotion ledger, and promote / roll back of a channel (see
 * registry.c). The promotion logic itself (register, move, roll back; the
 * ledger) is in sql/004_registry.sql so the promote job and the HTTP API
 * share it. Waiting on a channel is longpoll.h.
 */
#ifndef ATELIERD_REGISTRY_H
#define ATELIERD_REGISTRY_H

#include "app.h"

/* 1 for a channel the registry has ("canary", "production"). */
int registry_valid_channel(const char *channel);

extern const struct http_route registry_routes[];
extern const size_t registry_nroutes;

#endif
