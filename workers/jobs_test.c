/*
 * jobs_test.c — TEST ONLY job kinds: they exercise the queue (retries,
 * crashes, cancel, timeouts, shutdown) without doing any real work.
 */
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "job.h"

int job_test_noop(struct job_ctx *ctx)
{
	job_set_result(ctx, json_pack("{s:s, s:i}", "worker", job_worker_name(ctx), "attempt", job_attempt(ctx)));
	return 0;
}

/* Parameters come at the top of the payload (queue tests and benches enqueue
 * them directly) or under "params" (a pipeline stage: its YAML params). */
static json_t *test_param(struct job_ctx *ctx, const char *name)
{
	json_t *p = job_payload(ctx);
	json_t *v = json_object_get(p, name);
	return v ? v : json_object_get(json_object_get(p, "params"), name);
}

int job_test_sleep(struct job_ctx *ctx)
{
	/* "duration" is how a pipeline says it (YAML durations reach us as ms) */
	json_t *dur = test_param(ctx, "ms");
	json_int_t ms = json_integer_value(dur ? dur : test_param(ctx, "duration"));
	int ignore_cancel = json_is_true(test_param(ctx, "ignore_cancel"));
	/* Like a training job that checkpoints: stop when the worker shuts down. */
	int checkpoint = json_is_true(test_param(ctx, "checkpoint"));
	if (ms < 0 || ms > 24LL * 3600 * 1000) {
		job_errorf(ctx, "test.sleep: ms out of range");
		job_no_retry(ctx);
		return AT_ERANGE;
	}
	/* Sleep in steps so progress moves and cancel is noticed quickly. */
	const int step = 50;
	for (json_int_t done = 0; done < ms; done += step) {
		int left = (int)(ms - done < step ? ms - done : step);
		if (ignore_cancel) {
			struct timespec ts = {left / 1000, (long)(left % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		} else if (job_sleep_ms(ctx, left) < 0 || (checkpoint && job_stopping(ctx))) {
			job_errorf(ctx, "test.sleep: stopped after %lld ms", (long long)done);
			return AT_ECANCELLED;
		}
		job_progress(ctx, (double)(done + left) / (double)ms, "sleeping", (int)((ms - done - left) / 1000));
	}
	job_set_result(ctx, json_pack("{s:s, s:I}", "worker", job_worker_name(ctx), "slept_ms", (json_int_t)ms));
	return 0;
}

int job_test_fail(struct job_ctx *ctx)
{
	const char *msg = json_string_value(test_param(ctx, "message"));
	json_t *retry = test_param(ctx, "retry");
	if (retry && json_is_false(retry))
		job_no_retry(ctx);
	job_errorf(ctx, "%s", msg ? msg : "test.fail: failing on purpose");
	return AT_EINTERNAL;
}

int job_test_crash(struct job_ctx *ctx)
{
	/* A worker dying mid-job: no reply, no release; only the lease tells. */
	kill(getpid(), SIGKILL);
	return AT_EINTERNAL;
}
