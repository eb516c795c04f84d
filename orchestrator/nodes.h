/*
 * nodes.h — serving-node heartbeats (POST /v1/nodes/heartbeat) and the fleet
 * view (GET /v1/nodes); see nodes.c.
 */
#ifndef ATELIERD_NODES_H
#define ATELIERD_NODES_H

#include "app.h"

extern const struct http_route nodes_routes[];
extern const size_t nodes_nroutes;

/* 1 when s is a serving-node name: 1..64 characters of [A-Za-z0-9._-]. */
int nodes_name_valid(const char *s);

#endif
