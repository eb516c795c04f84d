/*
 * longpoll.h — the long-poll hub behind GET /v1/models/{name}/channels/{channel}
 * ?after=V&wait=S: serving nodes wait there until the channel moves past V
 * (see longpoll.c). Owned by struct app: started after the database pool,
 * stopped at shutdown (every parked request answered 304), freed after the
 * loop ends.
 */
#ifndef ATELIERD_LONGPOLL_H
#define ATELIERD_LONGPOLL_H

#include "app.h"
#include "buf.h"

struct longpoll;

int longpoll_start(struct app *app, struct longpoll **out) AT_MUST_CHECK;
/* Answers every held long-poll (304) so the HTTP server can close. */
void longpoll_stop(struct longpoll *lp);
/* NULL is a no-op. */
void longpoll_free(struct longpoll *lp);
int longpoll_metrics(const struct longpoll *lp, struct at_buf *b) AT_MUST_CHECK;

extern const struct http_route longpoll_routes[];
extern const size_t longpoll_nroutes;

#endif
