/*
 * joblog_api.h — GET /v1/jobs/{id}/log, one page or followed (see joblog_api.c).
 */
#ifndef ATELIERD_JOBLOG_API_H
#define ATELIERD_JOBLOG_API_H

#include "app.h"

extern const struct http_route joblog_api_routes[];
extern const size_t joblog_api_nroutes;

/* Shutdown: end every follower; on_closed runs once their queries have
 * answered and the poll timer is closed. */
void joblog_api_stop(void (*on_closed)(void *arg), void *arg);

#endif
