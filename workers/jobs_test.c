/*
 * jobs_test.c — TEST ONLY job kinds: they exercise the queue (retries,
 * crashes, cancel, timeouts, shutdown) without doing any real work.
 */
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "params.h"

int job_test_noop(struct job_ctx *ctx)
{
	job_set_result(ctx, json_pack("{s:s, s:i}", "worker", job_worker_name(ctx), "attempt", job_attempt(ctx)));
	return 0;
}

/* Parameters come under "params" (a pipeline stage: its canonical params) or
 * at the top of the payload (queue tests and benches enqueue them directly).
 * A bad or missing one fails the job at once, naming it. */
static int test_params(struct job_ctx *ctx, struct params_reader *r)
{
	json_t *p = job_payload(ctx);
	if (json_is_object(json_object_get(p, "params")))
		params_reader_init(r, job_kind(ctx), p);
	else
		params_reader_init_obj(r, job_kind(ctx), p);
	return r->rc;
}

static int bad_params(struct job_ctx *ctx, const struct params_reader *r)
{
	job_errorf(ctx, "%s", r->why);
	job_no_retry(ctx);
	return r->rc;
}

int job_test_sleep(struct job_ctx *ctx)
{
	struct params_reader r;
	struct test_sleep_params p;
	if (test_params(ctx, &r) < 0 || test_sleep_params_read(&r, &p) < 0)
		return bad_params(ctx, &r);
	json_int_t ms = p.ms;
	if (ms < 0 || ms > 24LL * 3600 * 1000) {
		job_errorf(ctx, "test.sleep: ms out of range");
		job_no_retry(ctx);
		return AT_ERANGE;
	}
	/* Sleep in steps so progress moves and cancel is noticed quickly; a
	 * line a second feeds the job's log (GET /v1/jobs/{id}/log). */
	const int step = 50;
	log_info("test.sleep: sleeping %lld ms", (long long)ms);
	for (json_int_t done = 0; done < ms; done += step) {
		if (done > 0 && done % 1000 == 0)
			log_info("test.sleep: %lld of %lld ms", (long long)done, (long long)ms);
		int left = (int)(ms - done < step ? ms - done : step);
		if (p.ignore_cancel) {
			struct timespec ts = {left / 1000, (long)(left % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		} else if (job_sleep_ms(ctx, left) < 0 || (p.checkpoint && job_stopping(ctx))) {
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
	struct params_reader r;
	struct test_fail_params p;
	if (test_params(ctx, &r) < 0 || test_fail_params_read(&r, &p) < 0)
		return bad_params(ctx, &r);
	if (p.no_retry)
		job_no_retry(ctx);
	log_warn("test.fail: %s", p.message);
	job_errorf(ctx, "%s", p.message);
	return AT_EINTERNAL;
}

int job_test_crash(struct job_ctx *ctx)
{
	struct params_reader r;
	struct test_crash_params p;
	if (test_params(ctx, &r) < 0 || test_crash_params_read(&r, &p) < 0)
		return bad_params(ctx, &r);
	/* params.after: the job runs (and heartbeats) that long first; a
	 * cancel or shutdown meanwhile ends it without the crash */
	if (p.after_ms > 0 && job_sleep_ms(ctx, (int)(p.after_ms > 86400000 ? 86400000 : p.after_ms)) < 0)
		return AT_ECANCELLED;
	/* A worker dying mid-job: no reply, no release; only the lease tells. */
	kill(getpid(), SIGKILL);
	return AT_EINTERNAL;
}
