/*
 * pipelines_api.h — atelierd's HTTP routes for pipelines, runs and the event
 * stream (see pipelines_api.c).
 */
#ifndef ATELIERD_PIPELINES_API_H
#define ATELIERD_PIPELINES_API_H

#include "app.h"

extern const struct http_route pipelines_api_routes[];
extern const size_t pipelines_api_nroutes;

#endif
