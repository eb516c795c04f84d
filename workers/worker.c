/*
 * worker.c — the atelier-worker runtime (see worker.h for the threads and who
 * owns what, docs/queue.md for the queue contract).
 *
 * Main loop: claim; if nothing is claimable, wait for a NOTIFY on
 * atelier_jobs (LISTENed on the same connection) or the safety-net poll
 * interval, reaping expired leases on each idle tick; run the job's handler;
 * report complete / fail / release with the attempt's owner token.
 *
 * Shutdown (SIGTERM or SIGINT): no new claims. A running job gets the grace
 * period to finish (its handler sees job_stopping()): if it returns in time
 * its outcome is reported as usual — success completes, a failure (a handler
 * that checkpointed and stopped) releases the job (re-queued at once, attempt
 * not counted, since the job did nothing wrong). If the grace period runs out, the supervisor
 * releases the job over its own connection and exits the process. A second
 * signal ends the grace period at once.
 */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "queue.h"

uint64_t worker_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void evfd_signal(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_error("eventfd write: %s", strerror(errno));
}

static void evfd_drain(int fd)
{
	uint64_t v;
	while (read(fd, &v, sizeof v) > 0)
		;
}

/* ---- supervisor thread ---- */

struct sup_state {
	struct worker *w;
	int sigfd;
	PGconn *conn;
	uint64_t gen;         /* job generation the fields below describe */
	uint64_t last_hb_ms;  /* last heartbeat (or the job's start) */
	uint64_t grace_until; /* 0: not stopping */
};

static void sup_heartbeat(struct sup_state *s, int64_t id, int64_t token, uint64_t gen, double progress,
			  const char *msg, int eta_s)
{
	struct worker *w = s->w;
	PGconn *conn = s->conn && PQstatus(s->conn) == CONNECTION_OK ? s->conn : NULL;
	if (!conn) {
		PQfinish(s->conn);
		s->conn = NULL;
		if (queue_connect(w->cfg->conninfo, &s->conn) < 0) {
			s->last_hb_ms = worker_now_ms() - (uint64_t)w->cfg->lease_s * 1000 / 3 + 1000; /* retry in 1 s */
			return;
		}
		conn = s->conn;
	}
	int cancel = 0;
	int rc = queue_heartbeat(conn, id, token, progress, msg, eta_s, w->cfg->lease_s, &cancel);
	s->last_hb_ms = worker_now_ms();
	if (rc == AT_EUNAVAILABLE || rc == AT_EDB) {
		log_warn("heartbeat for job %" PRId64 " failed (%s); retrying", id, at_strerror(rc));
		s->last_hb_ms -= (uint64_t)w->cfg->lease_s * 1000 / 3 - 1000;
		return;
	}
	if (rc == 0 && !cancel)
		return;
	pthread_mutex_lock(&w->mu);
	if (w->cur && w->gen == gen) {
		if (rc == AT_ESTALE)
			log_warn("job %" PRId64 " is no longer ours (lease expired or reaped); stopping it", id);
		else
			log_info("job %" PRId64 " cancel requested", id);
		job_ctx_stop_locked(w->cur, rc == AT_ESTALE ? JOB_STOP_LOST : JOB_STOP_CANCEL);
	}
	pthread_mutex_unlock(&w->mu);
}

static void sup_signal(struct sup_state *s)
{
	struct worker *w = s->w;
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (!atomic_load(&w->stopping)) {
			log_info("%s: stopping (grace %.1f s for a running job)", strsignal((int)si.ssi_signo),
				 w->cfg->grace_s);
			atomic_store(&w->stopping, 1);
			s->grace_until = worker_now_ms() + (uint64_t)(w->cfg->grace_s * 1000);
			evfd_signal(w->main_evfd);
		} else {
			log_info("%s again: ending the grace period", strsignal((int)si.ssi_signo));
			s->grace_until = worker_now_ms();
		}
	}
}

/* The grace period is over and a job is still running: give it back and go. */
static void sup_release_and_exit(struct sup_state *s, int64_t id, int64_t token)
{
	struct worker *w = s->w;
	int rc = AT_EUNAVAILABLE;
	for (int tries = 0; tries < 3 && rc == AT_EUNAVAILABLE; tries++) {
		if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
			PQfinish(s->conn);
			s->conn = NULL;
			if (queue_connect(w->cfg->conninfo, &s->conn) < 0)
				continue;
		}
		rc = queue_release(s->conn, id, token);
	}
	if (rc == 0)
		log_info("grace period over: released job %" PRId64 " back to the queue", id);
	else
		log_warn("grace period over: could not release job %" PRId64 " (%s); its lease will expire",
			 id, at_strerror(rc));
	/* The handler is still running on the main thread: leave without joining it. */
	_exit(0);
}

static void *supervisor_main(void *arg)
{
	struct sup_state *s = arg;
	struct worker *w = s->w;
	const uint64_t hb_every = (uint64_t)w->cfg->lease_s * 1000 / 3;
	const uint64_t tick = hb_every / 2 < 1000 ? hb_every / 2 : 1000;
	while (!atomic_load(&w->quit)) {
		/* Snapshot the current job. */
		pthread_mutex_lock(&w->mu);
		int active = w->cur != NULL;
		uint64_t gen = w->gen;
		int64_t id = active ? w->cur->id : 0, token = w->cur_token;
		int timeout_s = w->cur_timeout_s;
		uint64_t started = w->cur_started_ms;
		int dirty = active && w->cur->progress_dirty;
		double progress = active ? w->cur->progress : -1;
		char msg[256] = "";
		int eta = -1;
		if (dirty) {
			snprintf(msg, sizeof msg, "%s", w->cur->progress_msg);
			eta = w->cur->eta_s;
			w->cur->progress_dirty = 0;
		}
		pthread_mutex_unlock(&w->mu);

		uint64_t now = worker_now_ms();
		if (active && gen != s->gen) {
			s->gen = gen;
			s->last_hb_ms = started;
		}
		if (active) {
			if (timeout_s > 0 && now >= started + (uint64_t)timeout_s * 1000) {
				pthread_mutex_lock(&w->mu);
				if (w->cur && w->gen == gen)
					job_ctx_stop_locked(w->cur, JOB_STOP_TIMEOUT);
				pthread_mutex_unlock(&w->mu);
			}
			if (s->grace_until && now >= s->grace_until)
				sup_release_and_exit(s, id, token);
			/* Progress goes out at most once a second; the lease every lease/3. */
			if (now >= s->last_hb_ms + hb_every || (dirty && now >= s->last_hb_ms + 1000)) {
				sup_heartbeat(s, id, token, gen, dirty ? progress : -1, dirty ? msg : NULL, eta);
				continue;
			}
			if (dirty) { /* not sent yet: keep it for the next heartbeat */
				pthread_mutex_lock(&w->mu);
				if (w->cur && w->gen == gen)
					w->cur->progress_dirty = 1;
				pthread_mutex_unlock(&w->mu);
			}
		}

		/* Sleep until the next thing due. Job starts are not signalled (that
		 * would cost a wake-up per job on the hot path): an idle supervisor
		 * looks every `tick` ms, well within the first lease/3. */
		int wait_ms = (int)tick;
		if (active) {
			uint64_t next = s->last_hb_ms + (dirty ? 1000 : hb_every);
			if (timeout_s > 0 && started + (uint64_t)timeout_s * 1000 < next)
				next = started + (uint64_t)timeout_s * 1000;
			if (s->grace_until && s->grace_until < next)
				next = s->grace_until;
			wait_ms = next > now ? (int)(next - now) : 0;
			/* Progress reported after this snapshot should not wait a whole lease/3. */
			if (wait_ms > (int)tick)
				wait_ms = (int)tick;
		}
		struct pollfd p[2] = {{.fd = s->sigfd, .events = POLLIN}, {.fd = w->sup_evfd, .events = POLLIN}};
		int n = poll(p, 2, wait_ms);
		if (n < 0 && errno != EINTR) {
			log_error("supervisor poll: %s", strerror(errno));
			break;
		}
		if (n > 0 && p[0].revents)
			sup_signal(s);
		if (n > 0 && p[1].revents)
			evfd_drain(w->sup_evfd);
	}
	PQfinish(s->conn);
	s->conn = NULL;
	return NULL;
}

/* ---- main thread ---- */

/* Wait ms (or until woken for shutdown). */
static void idle_sleep(struct worker *w, int ms)
{
	struct pollfd p = {.fd = w->main_evfd, .events = POLLIN};
	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		log_error("poll: %s", strerror(errno));
}

/* (Re)connect the main connection, LISTEN and register; retries with backoff
 * until connected or stopping. 0 when connected. */
static int ensure_conn(struct worker *w)
{
	int delay = 100;
	while (!w->conn || PQstatus(w->conn) != CONNECTION_OK) {
		if (atomic_load(&w->stopping))
			return AT_ECANCELLED;
		PQfinish(w->conn);
		w->conn = NULL;
		int rc = queue_connect(w->cfg->conninfo, &w->conn);
		if (rc == 0)
			rc = queue_listen(w->conn);
		if (rc == 0)
			rc = queue_worker_seen(w->conn, w->cfg->name, w->cfg->kinds, w->cfg->gpus);
		if (rc == 0) {
			log_info("connected");
			break;
		}
		PQfinish(w->conn);
		w->conn = NULL;
		log_warn("database not ready (%s); retrying in %d ms", at_strerror(rc), delay);
		idle_sleep(w, delay);
		delay = delay * 2 > 5000 ? 5000 : delay * 2;
	}
	return 0;
}

enum outcome { OUT_COMPLETE, OUT_FAIL, OUT_RELEASE, OUT_NONE };

/* Report the attempt's outcome, reconnecting if the connection broke. A
 * report that committed just before the connection died comes back AT_ESTALE
 * on retry; that is logged, not an error. */
static void report(struct worker *w, const struct queue_job *job, struct job_ctx *ctx, enum outcome out,
		   int retryable, struct queue_job *next)
{
	char *result = NULL;
	char state[16] = "";
	int rc = AT_EUNAVAILABLE;
	if (out == OUT_COMPLETE && ctx->result) {
		result = json_dumps(ctx->result, JSON_COMPACT);
		if (!result) {
			out = OUT_FAIL;
			retryable = 1;
			snprintf(ctx->error, sizeof ctx->error, "could not serialise the result");
		}
	}
	for (int tries = 0; tries < 5 && rc == AT_EUNAVAILABLE; tries++) {
		if (tries && ensure_conn(w) < 0)
			break;
		switch (out) {
		case OUT_COMPLETE:
			/* The hot path: complete and claim the next job in one round trip. */
			if (next && tries == 0 && !atomic_load(&w->stopping))
				rc = queue_complete_claim(w->conn, job, result, w->cfg->name,
							  w->cfg->kinds, w->cfg->gpus, w->cfg->lease_s, next);
			else
				rc = queue_complete(w->conn, job->id, job->token, result);
			break;
		case OUT_FAIL:
			rc = queue_fail(w->conn, job->id, job->token, ctx->error[0] ? ctx->error : "failed",
					retryable, state);
			break;
		case OUT_RELEASE:
			rc = queue_release(w->conn, job->id, job->token);
			break;
		case OUT_NONE:
			rc = 0;
			break;
		}
		if (rc == AT_EUNAVAILABLE) {
			PQfinish(w->conn);
			w->conn = NULL;
		}
	}
	free(result);
	if (rc == AT_ESTALE) {
		w->n_lost++;
		log_warn("job %" PRId64 " (%s): outcome rejected, token stale (lease expired, job re-claimed)",
			 job->id, job->kind);
	} else if (rc < 0) {
		log_error("job %" PRId64 " (%s): could not report outcome: %s", job->id, job->kind,
			  at_strerror(rc));
	} else if (out == OUT_COMPLETE) {
		w->n_ok++;
		log_debug("job %" PRId64 " (%s) succeeded", job->id, job->kind);
	} else if (out == OUT_FAIL) {
		w->n_failed++;
		log_info("job %" PRId64 " (%s) attempt %d/%d failed: %s -> %s", job->id, job->kind,
			 job->attempts, job->max_attempts, ctx->error, state);
	} else if (out == OUT_RELEASE) {
		w->n_released++;
		log_info("job %" PRId64 " (%s) released back to the queue", job->id, job->kind);
	}
}

/* Run one claimed job and report its outcome. *next receives the next job
 * when the report could claim it in the same call (next->id == 0 if not). */
static void run_job(struct worker *w, struct queue_job *job, struct queue_job *next)
{
	struct job_ctx ctx;
	memset(&ctx, 0, sizeof ctx);
	ctx.w = w;
	ctx.id = job->id;
	ctx.attempt = job->attempts;
	ctx.kind = job->kind;
	ctx.progress = 0;
	ctx.eta_s = -1;
	atomic_init(&ctx.stop, JOB_RUN);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ctx.cond, &ca);
	pthread_condattr_destroy(&ca);
	w->n_run++;

	const struct job_handler *h = job_handler_find(job->kind);
	json_error_t jerr;
	ctx.payload = json_loads(job->payload, 0, &jerr);
	if (!h || !ctx.payload || !json_is_object(ctx.payload)) {
		/* Claims only ask for our kinds, so !h cannot happen; a bad payload can. */
		snprintf(ctx.error, sizeof ctx.error, "%s", !h ? "no handler for this kind" : "payload is not a JSON object");
		report(w, job, &ctx, OUT_FAIL, 0, NULL);
		goto out;
	}

	pthread_mutex_lock(&w->mu);
	w->cur = &ctx;
	w->cur_token = job->token;
	w->cur_timeout_s = job->timeout_s;
	w->cur_started_ms = worker_now_ms();
	w->gen++;
	pthread_mutex_unlock(&w->mu);

	log_debug("job %" PRId64 " (%s) attempt %d/%d started", job->id, job->kind, job->attempts,
		  job->max_attempts);
	int rc = h->run(&ctx);

	pthread_mutex_lock(&w->mu);
	w->cur = NULL;
	w->gen++;
	pthread_mutex_unlock(&w->mu);

	enum job_stop why = (enum job_stop)atomic_load(&ctx.stop);
	if (why == JOB_STOP_LOST) {
		w->n_lost++;
		log_warn("job %" PRId64 " (%s): lease lost; outcome dropped", job->id, job->kind);
	} else if (rc == 0) {
		report(w, job, &ctx, OUT_COMPLETE, 0, next);
	} else if (why == JOB_RUN && atomic_load(&w->stopping)) {
		/* Stopped for the shutdown (or failed meanwhile): not the job's fault. */
		report(w, job, &ctx, OUT_RELEASE, 0, NULL);
	} else if (why == JOB_STOP_TIMEOUT) {
		snprintf(ctx.error, sizeof ctx.error, "timed out after %d s (attempt %d)", job->timeout_s,
			 job->attempts);
		report(w, job, &ctx, OUT_FAIL, 0, NULL);
	} else if (why == JOB_STOP_CANCEL) {
		snprintf(ctx.error, sizeof ctx.error, "cancelled");
		report(w, job, &ctx, OUT_FAIL, 0, NULL);
	} else {
		if (!ctx.error[0])
			snprintf(ctx.error, sizeof ctx.error, "%s", at_strerror(rc));
		report(w, job, &ctx, OUT_FAIL, !ctx.no_retry, NULL);
	}
out:
	json_decref(ctx.payload);
	json_decref(ctx.result);
	pthread_cond_destroy(&ctx.cond);
}

int worker_run(const struct worker_config *cfg)
{
	struct worker w;
	memset(&w, 0, sizeof w);
	w.cfg = cfg;
	pthread_mutex_init(&w.mu, NULL);
	atomic_init(&w.stopping, 0);
	atomic_init(&w.quit, 0);
	int status = 1;
	struct sup_state sup = {.w = &w, .sigfd = -1};
	pthread_t sup_thread;
	int sup_started = 0;

	/* Signals are taken synchronously by the supervisor (signalfd); every
	 * thread inherits this mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	w.main_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w.sup_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	sup.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w.main_evfd < 0 || w.sup_evfd < 0 || sup.sigfd < 0) {
		log_error("eventfd/signalfd: %s", strerror(errno));
		goto out;
	}
	if (pthread_create(&sup_thread, NULL, supervisor_main, &sup) != 0) {
		log_error("cannot start the supervisor thread");
		goto out;
	}
	sup_started = 1;

	char kinds[512] = "";
	for (size_t i = 0, n = 0; cfg->kinds[i]; i++)
		n += (size_t)snprintf(kinds + n, n < sizeof kinds ? sizeof kinds - n : 0, "%s%s", i ? "," : "",
				      cfg->kinds[i]);
	log_info("%s starting: kinds=%s gpus=%d lease=%ds poll=%.1fs grace=%.1fs", cfg->name, kinds,
		 cfg->gpus, cfg->lease_s, cfg->poll_s, cfg->grace_s);

	uint64_t last_tick = 0;
	const int poll_ms = (int)(cfg->poll_s * 1000);
	struct queue_job job = {0};
	while (!atomic_load(&w.stopping)) {
		if (ensure_conn(&w) < 0)
			break;
		if (job.id == 0) {
			int rc = queue_claim(w.conn, cfg->name, cfg->kinds, cfg->gpus, cfg->lease_s, &job);
			if (rc == AT_ENOTFOUND) {
				/* Idle: the safety-net tick reaps leases and says we are alive. */
				uint64_t now = worker_now_ms();
				if (now >= last_tick + (uint64_t)poll_ms) {
					last_tick = now;
					int reaped = 0;
					if (cfg->reap && queue_reap(w.conn, &reaped) == 0 && reaped > 0)
						log_info("reaped %d job(s) with expired leases or timeouts", reaped);
					if (queue_worker_seen(w.conn, cfg->name, cfg->kinds, cfg->gpus) < 0)
						continue;
				}
				rc = queue_listen_wait(w.conn, poll_ms, w.main_evfd);
				if (rc == AT_EUNAVAILABLE) {
					PQfinish(w.conn);
					w.conn = NULL;
				}
				if (rc == 0) /* a quiet poll interval: time for the tick */
					last_tick = 0;
				continue;
			}
			if (rc < 0) {
				if (PQstatus(w.conn) != CONNECTION_BAD)
					idle_sleep(&w, 1000);
				continue; /* ensure_conn reconnects a broken connection */
			}
		}
		struct queue_job next = {0};
		run_job(&w, &job, &next);
		queue_job_clear(&job);
		job = next;
	}
	/* Claimed by the last complete+claim, never started: give it back. */
	if (job.id && w.conn && queue_release(w.conn, job.id, job.token) == 0)
		log_info("released unstarted job %" PRId64 " (%s)", job.id, job.kind);
	queue_job_clear(&job);
	status = 0;
	log_info("%s stopped: %ld job(s) run, %ld succeeded, %ld failed, %ld released, %ld lost", cfg->name,
		 w.n_run, w.n_ok, w.n_failed, w.n_released, w.n_lost);
out:
	if (sup_started) {
		atomic_store(&w.quit, 1);
		evfd_signal(w.sup_evfd);
		pthread_join(sup_thread, NULL);
	}
	PQfinish(w.conn);
	if (sup.sigfd >= 0)
		close(sup.sigfd);
	if (w.main_evfd >= 0)
		close(w.main_evfd);
	if (w.sup_evfd >= 0)
		close(w.sup_evfd);
	pthread_mutex_destroy(&w.mu);
	return status;
}
