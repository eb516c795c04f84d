/*
 * supervisor.h — `atelierd --local-workers N`: spawn N atelier-worker
 * processes (uv_spawn) with this daemon's database settings, restart any that
 * dies (with backoff), and stop them (SIGTERM, then SIGKILL) at shutdown.
 */
#ifndef ATELIERD_SUPERVISOR_H
#define ATELIERD_SUPERVISOR_H

#include "app.h"

struct supervisor;

int supervisor_start(struct app *app, int n, const char *worker_bin, struct supervisor **out) AT_MUST_CHECK;
void supervisor_stop(struct supervisor *s, void (*on_closed)(void *), void *arg);
int supervisor_running(const struct supervisor *s);

#endif
