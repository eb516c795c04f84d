/*
 * scheduler.h — leadership, triggers and the lease reaper of atelierd.
 *
 * Every atelierd serves the API; exactly one — the holder of a PostgreSQL
 * advisory lock on a connection of its own — is the leader, which runs the
 * periodic tick (reap expired leases, fire `every:` schedules, nudge waiting
 * runs) and reacts to ingest NOTIFYs for `new_sketches:` triggers. A standby
 * retries the lock every tick, so it takes over within about one tick of the
 * leader's death (PostgreSQL drops a dead session's locks at once).
 *
 * The run state machine itself is in SQL (sql/003_scheduler.sql).
 */
#ifndef ATELIERD_SCHEDULER_H
#define ATELIERD_SCHEDULER_H

#include "app.h"
#include "buf.h"

struct scheduler;

int scheduler_start(struct app *app, int tick_ms, struct scheduler **out) AT_MUST_CHECK;
/* Stops timers and closes the leader connection; on_closed runs when done. */
void scheduler_stop(struct scheduler *s, void (*on_closed)(void *), void *arg);
int scheduler_is_leader(const struct scheduler *s);
int scheduler_metrics(const struct scheduler *s, struct at_buf *b) AT_MUST_CHECK;

#endif
