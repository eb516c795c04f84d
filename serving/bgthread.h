/*
 * bgthread.h — the lifecycle the node's background threads share (the
 * channel puller and the uplink): a thread, a stop flag, and a mutex +
 * condition variable the thread sleeps on so stopping wakes it at once.
 */
#ifndef ATELIER_SERVE_BGTHREAD_H
#define ATELIER_SERVE_BGTHREAD_H

#include <pthread.h>

#include "err.h"

struct bgthread {
	pthread_t thread;
	int started;
	int stop; /* read with bgthread_stopping() from any thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* Initialises the lock and condition, then starts fn(arg); on failure the
 * lock and condition are destroyed again and AT_ENOMEM is returned. */
int bgthread_start(struct bgthread *t, void *(*fn)(void *), void *arg) AT_MUST_CHECK;
/* Sets the stop flag and wakes the thread; it returns soon after. */
void bgthread_stop(struct bgthread *t);
/* Stops, joins, and destroys the lock and condition. */
void bgthread_join(struct bgthread *t);
int bgthread_stopping(const struct bgthread *t);

#endif
