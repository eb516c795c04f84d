/*
 * bgthread.c — see bgthread.h.
 */
#include "bgthread.h"

int bgthread_start(struct bgthread *t, void *(*fn)(void *), void *arg)
{
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	if (pthread_create(&t->thread, NULL, fn, arg) != 0) {
		pthread_mutex_destroy(&t->mu);
		pthread_cond_destroy(&t->cv);
		return AT_ENOMEM;
	}
	t->started = 1;
	return 0;
}

void bgthread_stop(struct bgthread *t)
{
	pthread_mutex_lock(&t->mu);
	__atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

void bgthread_join(struct bgthread *t)
{
	if (!t->started)
		return;
	bgthread_stop(t);
	pthread_join(t->thread, NULL);
	t->started = 0;
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
}

int bgthread_stopping(const struct bgthread *t) { return __atomic_load_n(&t->stop, __ATOMIC_ACQUIRE); }
