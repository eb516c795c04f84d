/* Unit tests for workers/joblog.c and lib/log.c's thread tap: a job's lines
 * are captured only from its own thread, in order, with their level; the
 * sender is woken once when a batch reaches JOBLOG_FLUSH_LINES; a batch is
 * capped and the excess counted; a batch with nowhere to go is dropped, not
 * kept to grow; after the job ends nothing more is captured. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../workers/joblog.h"
#include "err.h"
#include "log.h"
#include "test.h"

static uint64_t wakes(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof v) != sizeof v)
		return 0;
	return v;
}

static void *other_thread(void *arg)
{
	(void)arg;
	log_info("from another thread");
	return NULL;
}

TEST(tap_captures_only_the_jobs_thread)
{
	int fd = eventfd(0, EFD_NONBLOCK);
	ASSERT(fd >= 0);
	struct joblog l;
	ASSERT_EQ_INT(joblog_init(&l, fd), 0);
	log_set_level(LOG_INFO);
	log_info("before the job");
	joblog_begin(&l, 42);
	log_info("line %d", 1);
	log_debug("filtered out by the level");
	log_warn("line %d", 2);
	pthread_t t;
	ASSERT_EQ_INT(pthread_create(&t, NULL, other_thread, NULL), 0);
	pthread_join(t, NULL);
	ASSERT(l.pending != NULL);
	ASSERT_EQ_INT((int)json_array_size(l.pending), 2);
	ASSERT_STREQ(json_string_value(json_array_get(json_array_get(l.pending, 0), 1)), "info");
	ASSERT_STREQ(json_string_value(json_array_get(json_array_get(l.pending, 0), 2)), "line 1");
	ASSERT_STREQ(json_string_value(json_array_get(json_array_get(l.pending, 1), 1)), "warn");
	ASSERT(json_integer_value(json_array_get(json_array_get(l.pending, 1), 0)) > 1700000000000LL);
	/* two lines, a moment old: not due yet; nothing woke the sender */
	ASSERT_EQ_INT(joblog_due(&l), 0);
	ASSERT_EQ_INT((int)wakes(fd), 0);
	/* no connection: the batch is dropped and said so, not kept */
	joblog_end(&l, NULL);
	ASSERT(l.pending == NULL);
	ASSERT_EQ_INT((int)l.job, 0);
	log_info("after the job");
	ASSERT(l.pending == NULL);
	joblog_destroy(&l);
	close(fd);
}

TEST(wake_once_at_the_batch_size_and_cap)
{
	int fd = eventfd(0, EFD_NONBLOCK);
	struct joblog l;
	ASSERT_EQ_INT(joblog_init(&l, fd), 0);
	log_set_level(LOG_INFO);
	joblog_begin(&l, 7);
	for (int i = 0; i < JOBLOG_FLUSH_LINES - 1; i++)
		log_info("x %d", i);
	ASSERT_EQ_INT((int)wakes(fd), 0);
	ASSERT_EQ_INT(joblog_due(&l), 0);
	log_info("the hundredth");
	ASSERT_EQ_INT((int)wakes(fd), 1);
	ASSERT_EQ_INT(joblog_due(&l), 1);
	for (int i = 0; i < JOBLOG_MAX_PENDING + 50 - JOBLOG_FLUSH_LINES; i++)
		log_info("y %d", i);
	ASSERT_EQ_INT((int)wakes(fd), 0); /* one wake per batch */
	ASSERT_EQ_INT((int)json_array_size(l.pending), JOBLOG_MAX_PENDING);
	ASSERT_EQ_INT((int)l.dropped, 50);
	ASSERT_EQ_INT(joblog_flush(&l, NULL, 0), AT_EUNAVAILABLE);
	ASSERT(l.pending == NULL && l.dropped == 0);
	log_set_thread_tap(NULL, NULL);
	joblog_destroy(&l);
	close(fd);
}

RUN_TESTS(tap_captures_only_the_jobs_thread, wake_once_at_the_batch_size_and_cap)
