/*
 * events.h — the Server-Sent Events hub behind GET /v1/events: one stream per
 * subscriber, fed by NOTIFY atelier_runs (so changes made through any
 * atelierd or any worker reach every subscriber), with a ping every 15 s so
 * dead clients are noticed.
 *
 * Owned by struct app: started with it, stopped at shutdown (every stream
 * ended, the ping timer closed; on_closed runs from the timer's close
 * callback), freed after the loop ends (the LISTEN callback may still fire
 * until the pool closes, and finds the hub stopped).
 */
#ifndef ATELIERD_EVENTS_H
#define ATELIERD_EVENTS_H

#include "app.h"

struct events;

int events_start(struct app *app, struct events **out) AT_MUST_CHECK;
/* Takes req: answers it with a stream of run events (run 0 = every run), or
 * with an error when the hub cannot listen or is stopping. */
void events_subscribe(struct events *e, http_req_t *req, long long run);
/* Ends every stream and closes the timer; on_closed(arg) once it is closed. */
void events_stop(struct events *e, void (*on_closed)(void *arg), void *arg);
/* After the loop ended; NULL is a no-op. */
void events_free(struct events *e);

#endif
