/*
 * artifacts_api.h — GET /v1/artifacts/{sha256}: streams an artifact the
 * database names (model, checkpoint, shard, evaluation sample) from the
 * store app->artifacts, with Range support (see artifacts_api.c).
 */
#ifndef ATELIERD_ARTIFACTS_API_H
#define ATELIERD_ARTIFACTS_API_H

#include "app.h"

extern const struct http_route artifacts_api_routes[];
extern const size_t artifacts_api_nroutes;

#endif
