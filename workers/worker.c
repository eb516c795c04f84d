/*
 * worker.c — the atelier-worker runtime (see worker.h for the threads and who
 * owns what, docs/queue.md for the queue contract).
 *
 * Each slot's loop: claim; if nothing is claimable, wait for a NOTIFY on
 * atelier_jobs (LISTENed on the slot's connection) or the safety-net poll
 * interval, reaping expired leases on each idle tick; run the job's handler;
 * report complete / fail / release with the attempt's owner token (a
 * completion claims the slot's next job in the same round trip).
 *
 * Shutdown (SIGTERM or SIGINT): no new claims. Running jobs get the grace
 * period to finish (their handlers see job_stopping()): a job that returns in
 * time has its outcome reported as usual — success completes, a failure (a
 * handler that checkpointed and stopped) releases the job (re-queued at once,
 * attempt not counted, since the job did nothing wrong). If the grace period
 * runs out, the supervisor releases every job still running over its own
 * connection and exits the process. A second signal ends the grace period at
 * once.
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

#include "cache.h"
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

/* A call answered AT_EUNAVAILABLE: the session is gone (lib/queue.c's
 * conn_error_res), so drop the connection; the next use opens a new one. */
static void drop_if_gone(PGconn **conn, int rc)
{
	if (rc == AT_EUNAVAILABLE) {
		PQfinish(*conn);
		*conn = NULL;
	}
}

/* ---- supervisor thread ---- */

struct sup_state {
	struct worker *w;
	int sigfd;
	PGconn *conn;
	uint64_t grace_until; /* 0: not stopping */
};

/* The supervisor's connection, (re)opened when needed; NULL if that failed. */
static PGconn *sup_conn(struct sup_state *s)
{
	if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
		return s->conn;
	PQfinish(s->conn);
	s->conn = NULL;
	if (queue_connect(s->w->cfg->conninfo, &s->conn) < 0)
		return NULL;
	return s->conn;
}

static void sup_heartbeat(struct sup_state *s, struct slot *sl, int64_t id, int64_t token, uint64_t gen,
			  double progress, const char *msg, int eta_s)
{
	struct worker *w = s->w;
	const uint64_t hb_every = (uint64_t)w->cfg->lease_s * 1000 / 3;
	PGconn *conn = sup_conn(s); /* NULL: could not connect (queue_connect said why) */
	int cancel = 0;
	int rc = conn ? queue_heartbeat(conn, id, token, progress, msg, eta_s, w->cfg->lease_s, &cancel)
		      : AT_EUNAVAILABLE;
	sl->last_hb_ms = worker_now_ms();
	if (rc == AT_EUNAVAILABLE || rc == AT_EDB) {
		if (conn) {
			log_warn("heartbeat for job %" PRId64 " failed (%s); retrying", id, at_strerror(rc));
			drop_if_gone(&s->conn, rc);
		}
		sl->last_hb_ms -= hb_every - 1000; /* retry in 1 s */
		return;
	}
	if (rc == 0 && !cancel)
		return;
	pthread_mutex_lock(&w->mu);
	if (sl->cur && sl->gen == gen) {
		if (rc == AT_ESTALE)
			log_warn("job %" PRId64 " is no longer ours (lease expired or reaped); stopping it", id);
		else
			log_info("job %" PRId64 " cancel requested", id);
		job_ctx_stop_locked(sl->cur, rc == AT_ESTALE ? JOB_STOP_LOST : JOB_STOP_CANCEL);
	}
	pthread_mutex_unlock(&w->mu);
}

static void wake_slots(struct worker *w, const struct slot *except)
{
	for (int i = 0; i < w->nslots; i++)
		if (&w->slots[i] != except)
			evfd_signal(w->slots[i].evfd);
}

static void sup_signal(struct sup_state *s)
{
	struct worker *w = s->w;
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (!atomic_load(&w->stopping)) {
			log_info("%s: stopping (grace %.1f s for running jobs)", strsignal((int)si.ssi_signo),
				 w->cfg->grace_s);
			atomic_store(&w->stopping, 1);
			s->grace_until = worker_now_ms() + (uint64_t)(w->cfg->grace_s * 1000);
			wake_slots(w, NULL);
		} else {
			log_info("%s again: ending the grace period", strsignal((int)si.ssi_signo));
			s->grace_until = worker_now_ms();
		}
	}
}

/* The grace period is over and jobs are still running: give them back and go. */
static void sup_release_and_exit(struct sup_state *s)
{
	struct worker *w = s->w;
	for (int i = 0; i < w->nslots; i++) {
		struct slot *sl = &w->slots[i];
		pthread_mutex_lock(&w->mu);
		int64_t id = sl->cur ? sl->cur->id : 0, token = sl->cur_token;
		pthread_mutex_unlock(&w->mu);
		if (!id)
			continue;
		int rc = AT_EUNAVAILABLE;
		for (int tries = 0; tries < 3 && rc == AT_EUNAVAILABLE; tries++) {
			PGconn *conn = sup_conn(s);
			if (!conn)
				continue;
			rc = queue_release(conn, id, token);
			drop_if_gone(&s->conn, rc);
		}
		if (rc == 0)
			log_info("grace period over: released job %" PRId64 " back to the queue", id);
		else
			log_warn("grace period over: could not release job %" PRId64 " (%s); its lease will expire", id,
				 at_strerror(rc));
	}
	/* The handlers are still running on their slots' threads: leave without joining them. */
	_exit(0);
}

/* One slot's due work (heartbeat, timeout); returns ms until it next needs a
 * look, or -1 when it heartbeated (look again at once). */
static int sup_slot(struct sup_state *s, struct slot *sl, uint64_t hb_every, uint64_t tick)
{
	struct worker *w = s->w;
	/* Snapshot the slot's job. */
	pthread_mutex_lock(&w->mu);
	int active = sl->cur != NULL;
	uint64_t gen = sl->gen;
	int64_t id = active ? sl->cur->id : 0, token = sl->cur_token;
	int timeout_s = sl->cur_timeout_s;
	uint64_t started = sl->cur_started_ms;
	int dirty = active && sl->cur->progress_dirty;
	double progress = active ? sl->cur->progress : -1;
	char msg[256] = "";
	int eta = -1;
	if (dirty) {
		snprintf(msg, sizeof msg, "%s", sl->cur->progress_msg);
		eta = sl->cur->eta_s;
		sl->cur->progress_dirty = 0;
	}
	pthread_mutex_unlock(&w->mu);
	if (!active)
		return (int)tick;

	uint64_t now = worker_now_ms();
	if (gen != sl->sup_gen) {
		sl->sup_gen = gen;
		sl->last_hb_ms = started;
	}
	if (timeout_s > 0 && now >= started + (uint64_t)timeout_s * 1000) {
		pthread_mutex_lock(&w->mu);
		if (sl->cur && sl->gen == gen)
			job_ctx_stop_locked(sl->cur, JOB_STOP_TIMEOUT);
		pthread_mutex_unlock(&w->mu);
	}
	/* Progress goes out at most once a second; the lease every lease/3. */
	if (now >= sl->last_hb_ms + hb_every || (dirty && now >= sl->last_hb_ms + 1000)) {
		sup_heartbeat(s, sl, id, token, gen, dirty ? progress : -1, dirty ? msg : NULL, eta);
		return -1;
	}
	if (dirty) { /* not sent yet: keep it for the next heartbeat */
		pthread_mutex_lock(&w->mu);
		if (sl->cur && sl->gen == gen)
			sl->cur->progress_dirty = 1;
		pthread_mutex_unlock(&w->mu);
	}
	uint64_t next = sl->last_hb_ms + (dirty ? 1000 : hb_every);
	if (timeout_s > 0 && started + (uint64_t)timeout_s * 1000 < next)
		next = started + (uint64_t)timeout_s * 1000;
	int wait_ms = next > now ? (int)(next - now) : 0;
	/* Progress reported after this snapshot should not wait a whole lease/3. */
	return wait_ms > (int)tick ? (int)tick : wait_ms;
}

static void *supervisor_main(void *arg)
{
	struct sup_state *s = arg;
	struct worker *w = s->w;
	const uint64_t hb_every = (uint64_t)w->cfg->lease_s * 1000 / 3;
	const uint64_t tick = hb_every / 2 < 1000 ? hb_every / 2 : 1000;
	while (!atomic_load(&w->quit)) {
		int wait_ms = (int)tick, again = 0;
		for (int i = 0; i < w->nslots; i++) {
			int ms = sup_slot(s, &w->slots[i], hb_every, tick);
			if (ms < 0)
				again = 1;
			else if (ms < wait_ms)
				wait_ms = ms;
		}
		if (s->grace_until) {
			uint64_t now = worker_now_ms();
			int running = 0;
			pthread_mutex_lock(&w->mu);
			for (int i = 0; i < w->nslots; i++)
				running += w->slots[i].cur != NULL;
			pthread_mutex_unlock(&w->mu);
			if (running && now >= s->grace_until)
				sup_release_and_exit(s);
			if (running && (int)(s->grace_until - now) < wait_ms)
				wait_ms = (int)(s->grace_until - now);
		}
		/* job logs: due batches (a second old, or JOBLOG_FLUSH_LINES lines) */
		for (int i = 0; i < w->nslots; i++)
			if (joblog_due(&w->slots[i].log) &&
			    joblog_flush(&w->slots[i].log, sup_conn(s), 0) == AT_EUNAVAILABLE)
				drop_if_gone(&s->conn, AT_EUNAVAILABLE);
		if (again)
			continue;

		/* Sleep until the next thing due. Job starts are not signalled (that
		 * would cost a wake-up per job on the hot path): an idle supervisor
		 * looks every `tick` ms, well within the first lease/3. */
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

/* ---- slot threads ---- */

/* Wait ms (or until woken for shutdown). */
static void idle_sleep(struct slot *sl, int ms)
{
	struct pollfd p = {.fd = sl->evfd, .events = POLLIN};
	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		log_error("poll: %s", strerror(errno));
}

/* GPUs offered in a claim: what the slot holds plus every free one. */
static int gpus_take(struct slot *sl)
{
	if (sl->w->cfg->gpus > 0)
		sl->held_gpus += atomic_exchange(&sl->w->free_gpus, 0);
	return sl->held_gpus;
}

/* Keep `need` of the held GPUs and give the rest back; with `wake`, other
 * slots look again (one may have missed a job for want of them). */
static void gpus_keep(struct slot *sl, int need, int wake)
{
	int back = sl->held_gpus - need;
	sl->held_gpus = need;
	if (back <= 0)
		return;
	atomic_fetch_add(&sl->w->free_gpus, back);
	if (wake && sl->w->nslots > 1)
		wake_slots(sl->w, sl);
}

/* (Re)connect the slot's connection, LISTEN and register; retries with
 * backoff until connected or stopping. 0 when connected. */
static int ensure_conn(struct slot *sl)
{
	struct worker *w = sl->w;
	int delay = 100;
	while (!sl->conn || PQstatus(sl->conn) != CONNECTION_OK) {
		if (atomic_load(&w->stopping))
			return AT_ECANCELLED;
		PQfinish(sl->conn);
		sl->conn = NULL;
		int rc = queue_connect(w->cfg->conninfo, &sl->conn);
		if (rc == 0)
			rc = queue_listen(sl->conn);
		if (rc == 0)
			rc = queue_worker_seen(sl->conn, w->cfg->name, w->cfg->kinds, w->cfg->gpus);
		if (rc == 0) {
			if (w->nslots > 1)
				log_info("slot %d connected", sl->index);
			else
				log_info("connected");
			break;
		}
		PQfinish(sl->conn);
		sl->conn = NULL;
		log_warn("database not ready (%s); retrying in %d ms", at_strerror(rc), delay);
		idle_sleep(sl, delay);
		delay = delay * 2 > 5000 ? 5000 : delay * 2;
	}
	return 0;
}

enum outcome { OUT_COMPLETE, OUT_FAIL, OUT_RELEASE, OUT_NONE };

/* Report the attempt's outcome, reconnecting if the connection broke. A
 * report that committed just before the connection died comes back AT_ESTALE
 * on retry; that is logged, not an error. Returns the report's status. */
static int report(struct slot *sl, const struct queue_job *job, struct job_ctx *ctx, enum outcome out, int retryable,
		  struct queue_job *next)
{
	struct worker *w = sl->w;
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
		if (tries && ensure_conn(sl) < 0)
			break;
		switch (out) {
		case OUT_COMPLETE:
			/* The hot path: complete and claim the next job in one round trip. */
			if (next && tries == 0 && !atomic_load(&w->stopping))
				rc = queue_complete_claim(sl->conn, job, result, w->cfg->name, w->cfg->kinds,
							  gpus_take(sl), w->cfg->lease_s, next);
			else
				rc = queue_complete(sl->conn, job->id, job->token, result);
			break;
		case OUT_FAIL:
			rc = queue_fail(sl->conn, job->id, job->token, ctx->error[0] ? ctx->error : "failed", retryable,
					state);
			break;
		case OUT_RELEASE: rc = queue_release(sl->conn, job->id, job->token); break;
		case OUT_NONE: rc = 0; break;
		}
		drop_if_gone(&sl->conn, rc);
	}
	free(result);
	if (rc == AT_ESTALE) {
		atomic_fetch_add(&w->n_lost, 1);
		log_warn("job %" PRId64 " (%s): outcome rejected, token stale (lease expired, job re-claimed)", job->id,
			 job->kind);
	} else if (rc < 0) {
		log_error("job %" PRId64 " (%s): could not report outcome: %s", job->id, job->kind, at_strerror(rc));
	} else if (out == OUT_COMPLETE) {
		atomic_fetch_add(&w->n_ok, 1);
		log_debug("job %" PRId64 " (%s) succeeded", job->id, job->kind);
	} else if (out == OUT_FAIL) {
		atomic_fetch_add(&w->n_failed, 1);
		log_info("job %" PRId64 " (%s) attempt %d/%d failed: %s -> %s", job->id, job->kind, job->attempts,
			 job->max_attempts, ctx->error, state);
	} else if (out == OUT_RELEASE) {
		atomic_fetch_add(&w->n_released, 1);
		log_info("job %" PRId64 " (%s) released back to the queue", job->id, job->kind);
	}
	return rc;
}

/* A job's context for this slot, before its handler runs. */
static void job_ctx_init(struct job_ctx *ctx, struct slot *sl, const struct queue_job *job)
{
	memset(ctx, 0, sizeof *ctx);
	ctx->w = sl->w;
	ctx->slot = sl;
	ctx->id = job->id;
	ctx->attempt = job->attempts;
	ctx->kind = job->kind;
	ctx->eta_s = -1;
	atomic_init(&ctx->stop, JOB_RUN);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ctx->cond, &ca);
	pthread_condattr_destroy(&ca);
}

static void job_ctx_release(struct job_ctx *ctx)
{
	json_decref(ctx->payload);
	json_decref(ctx->result);
	pthread_cond_destroy(&ctx->cond);
}

/* A handler that left a transaction open (or a connection that broke): the
 * next job must not inherit it. */
static void drop_dirty_conn(struct slot *sl, const struct queue_job *job)
{
	if (sl->hconn && PQtransactionStatus(sl->hconn) != PQTRANS_IDLE) {
		log_warn("job %" PRId64 " (%s) left its database connection in a transaction (or broken); closing it",
			 job->id, job->kind);
		PQfinish(sl->hconn);
		sl->hconn = NULL;
	}
}

/* Run one claimed job and report its outcome. *next receives the next job
 * when the report could claim it in the same call (next->id == 0 if not). */
static void run_job(struct slot *sl, struct queue_job *job, struct queue_job *next)
{
	struct worker *w = sl->w;
	struct job_ctx ctx;
	job_ctx_init(&ctx, sl, job);
	atomic_fetch_add(&w->n_run, 1);

	const struct job_handler *h = job_handler_find(job->kind);
	json_error_t jerr;
	ctx.payload = json_loads(job->payload, 0, &jerr);
	if (!h || !ctx.payload || !json_is_object(ctx.payload)) {
		/* Claims only ask for our kinds, so !h cannot happen; a bad payload can. */
		snprintf(ctx.error, sizeof ctx.error, "%s",
			 !h ? "no handler for this kind" : "payload is not a JSON object");
		report(sl, job, &ctx, OUT_FAIL, 0, NULL);
		goto out;
	}

	pthread_mutex_lock(&w->mu);
	sl->cur = &ctx;
	sl->cur_token = job->token;
	sl->cur_timeout_s = job->timeout_s;
	sl->cur_started_ms = worker_now_ms();
	sl->gen++;
	pthread_mutex_unlock(&w->mu);

	joblog_begin(&sl->log, job->id);
	log_debug("job %" PRId64 " (%s) attempt %d/%d started", job->id, job->kind, job->attempts, job->max_attempts);
	/* A cacheable stage identical to a succeeded job takes its result instead
	 * of running (a failed lookup only means the job runs). */
	int hit = 0;
	if (step_cache_begin(&ctx, h, job->token, &hit) < 0)
		hit = 0;
	int rc = hit ? 0 : h->run(&ctx);

	pthread_mutex_lock(&w->mu);
	sl->cur = NULL;
	sl->gen++;
	pthread_mutex_unlock(&w->mu);
	drop_dirty_conn(sl, job);
	/* before the outcome: whoever sees the job finished finds its whole log */
	joblog_end(&sl->log, sl->conn);

	enum job_stop why = (enum job_stop)atomic_load(&ctx.stop);
	if (ctx.outcome_done) {
		atomic_fetch_add(&w->n_released, 1);
		log_info("job %" PRId64 " (%s): given back by the queue (%s)", job->id, job->kind, ctx.error);
	} else if (why == JOB_STOP_LOST) {
		atomic_fetch_add(&w->n_lost, 1);
		log_warn("job %" PRId64 " (%s): lease lost; outcome dropped", job->id, job->kind);
	} else if (rc == 0) {
		if (report(sl, job, &ctx, OUT_COMPLETE, 0, next) == 0)
			step_cache_record(&ctx);
	} else if (why == JOB_RUN && atomic_load(&w->stopping)) {
		/* Stopped for the shutdown (or failed meanwhile): not the job's fault. */
		report(sl, job, &ctx, OUT_RELEASE, 0, NULL);
	} else if (why == JOB_STOP_TIMEOUT) {
		snprintf(ctx.error, sizeof ctx.error, "timed out after %d s (attempt %d)", job->timeout_s,
			 job->attempts);
		report(sl, job, &ctx, OUT_FAIL, 0, NULL);
	} else if (why == JOB_STOP_CANCEL) {
		snprintf(ctx.error, sizeof ctx.error, "cancelled");
		report(sl, job, &ctx, OUT_FAIL, 0, NULL);
	} else {
		if (!ctx.error[0])
			snprintf(ctx.error, sizeof ctx.error, "%s", at_strerror(rc));
		report(sl, job, &ctx, OUT_FAIL, !ctx.no_retry, NULL);
	}
out:
	job_ctx_release(&ctx);
}

/*
 * A rank > 0 of a gang this worker joined (sql/016_gang.sql): the job's
 * handler runs as that rank. The job belongs to rank 0's worker, so nothing
 * here heartbeats, logs to the job or reports an outcome: the rank keeps its
 * own lease through the handler's gang polls, and its failures reach rank 0
 * through the process group (or the lease).
 */
static void run_gang_rank(struct slot *sl, struct queue_job *job, const struct queue_gang *g)
{
	struct job_ctx ctx;
	job_ctx_init(&ctx, sl, job);
	ctx.gang = *g;
	ctx.in_gang = 1;
	const struct job_handler *h = job_handler_find(job->kind);
	json_error_t jerr;
	ctx.payload = json_loads(job->payload, 0, &jerr);
	log_info("job %" PRId64 " (%s): rank %d of %d joined (store %s)", job->id, job->kind, g->rank, g->size,
		 g->rendezvous);
	int rc = h && json_is_object(ctx.payload) ? h->run(&ctx) : AT_EINVAL;
	if (rc < 0)
		log_warn("job %" PRId64 " (%s): rank %d stopped: %s", job->id, job->kind, g->rank,
			 ctx.error[0] ? ctx.error : at_strerror(rc));
	else
		log_info("job %" PRId64 " (%s): rank %d done", job->id, job->kind, g->rank);
	drop_dirty_conn(sl, job);
	job_ctx_release(&ctx);
}

/* Only train jobs form gangs (the jobs_gang_size trigger). */
static int serves_gangs(const struct worker_config *cfg)
{
	for (size_t i = 0; cfg->kinds[i]; i++)
		if (strcmp(cfg->kinds[i], "train") == 0)
			return 1;
	return 0;
}

static void *slot_main(void *arg)
{
	struct slot *sl = arg;
	struct worker *w = sl->w;
	const struct worker_config *cfg = w->cfg;
	uint64_t last_tick = 0;
	const int poll_ms = (int)(cfg->poll_s * 1000);
	struct queue_job job = {0};
	const int gangs = serves_gangs(cfg);
	while (!atomic_load(&w->stopping)) {
		if (ensure_conn(sl) < 0)
			break;
		if (job.id == 0 && gangs) {
			/* Before new work: a gang waiting for ranks fills from the
			 * workers that free up first, so gangs finish forming. */
			struct queue_job gj;
			struct queue_gang g;
			int rc = queue_gang_join(sl->conn, cfg->name, cfg->kinds, gpus_take(sl), cfg->lease_s, &gj, &g);
			gpus_keep(sl, rc == 0 ? gj.needs_gpu : 0, rc == 0);
			if (rc == 0) {
				run_gang_rank(sl, &gj, &g);
				gpus_keep(sl, 0, 1);
				queue_job_clear(&gj);
				continue;
			}
			drop_if_gone(&sl->conn, rc);
			if (rc == AT_EUNAVAILABLE)
				continue;
		}
		if (job.id == 0) {
			int rc = queue_claim(sl->conn, cfg->name, cfg->kinds, gpus_take(sl), cfg->lease_s, &job);
			gpus_keep(sl, rc == 0 ? job.needs_gpu : 0, rc == 0);
			if (rc == AT_ENOTFOUND) {
				/* Idle: the safety-net tick reaps leases and says we are alive. */
				uint64_t now = worker_now_ms();
				if (now >= last_tick + (uint64_t)poll_ms) {
					last_tick = now;
					int reaped = 0;
					if (cfg->reap && queue_reap(sl->conn, &reaped) == 0 && reaped > 0)
						log_info("reaped %d job(s) with expired leases or timeouts", reaped);
					if (queue_worker_seen(sl->conn, cfg->name, cfg->kinds, cfg->gpus) < 0)
						continue;
				}
				rc = queue_listen_wait(sl->conn, poll_ms, sl->evfd);
				drop_if_gone(&sl->conn, rc);
				if (rc == 0) /* a quiet poll interval: time for the tick */
					last_tick = 0;
				if (rc == 2) /* another slot gave GPUs back (or shutdown) */
					evfd_drain(sl->evfd);
				continue;
			}
			drop_if_gone(&sl->conn, rc);
			if (rc == AT_EUNAVAILABLE)
				continue; /* ensure_conn reconnects */
			if (rc < 0) {
				idle_sleep(sl, 1000);
				continue;
			}
		}
		struct queue_job next = {0};
		run_job(sl, &job, &next);
		/* The slot keeps the GPUs its next job needs; the rest go back. */
		gpus_keep(sl, next.id ? next.needs_gpu : 0, 1);
		queue_job_clear(&job);
		job = next;
	}
	/* Claimed by the last complete+claim, never started: give it back. */
	if (job.id && sl->conn && queue_release(sl->conn, job.id, job.token) == 0)
		log_info("released unstarted job %" PRId64 " (%s)", job.id, job.kind);
	queue_job_clear(&job);
	gpus_keep(sl, 0, 0);
	PQfinish(sl->conn);
	sl->conn = NULL;
	PQfinish(sl->hconn);
	sl->hconn = NULL;
	return NULL;
}

int worker_run(const struct worker_config *cfg)
{
	struct worker w;
	memset(&w, 0, sizeof w);
	w.cfg = cfg;
	w.nslots = cfg->concurrency > 0 ? cfg->concurrency : 1;
	pthread_mutex_init(&w.mu, NULL);
	atomic_init(&w.stopping, 0);
	atomic_init(&w.quit, 0);
	atomic_init(&w.free_gpus, cfg->gpus);
	atomic_init(&w.n_run, 0);
	atomic_init(&w.n_ok, 0);
	atomic_init(&w.n_failed, 0);
	atomic_init(&w.n_released, 0);
	atomic_init(&w.n_lost, 0);
	int status = 1;
	struct sup_state sup = {.w = &w, .sigfd = -1};
	pthread_t sup_thread;
	int sup_started = 0;
	w.sup_evfd = -1;

	/* Signals are taken synchronously by the supervisor (signalfd); every
	 * thread inherits this mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	w.slots = calloc((size_t)w.nslots, sizeof *w.slots);
	if (!w.slots) {
		log_error("out of memory");
		goto out;
	}
	for (int i = 0; i < w.nslots; i++)
		w.slots[i].evfd = -1;
	w.sup_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	for (int i = 0; i < w.nslots; i++) {
		w.slots[i].w = &w;
		w.slots[i].index = i;
		w.slots[i].evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w.slots[i].evfd < 0) {
			log_error("eventfd: %s", strerror(errno));
			goto out;
		}
		if (joblog_init(&w.slots[i].log, w.sup_evfd) < 0) {
			log_error("out of memory");
			goto out;
		}
		w.slots[i].log_inited = 1;
	}
	sup.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w.sup_evfd < 0 || sup.sigfd < 0) {
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
	log_info("%s starting: kinds=%s gpus=%d concurrency=%d lease=%ds poll=%.1fs grace=%.1fs code=%.16s", cfg->name,
		 kinds, cfg->gpus, w.nslots, cfg->lease_s, cfg->poll_s, cfg->grace_s,
		 *step_cache_code_version() ? step_cache_code_version() : "none (step cache off)");

	/* Handlers (libtorch training among them) run on the slot threads: give
	 * them the main thread's stack size rather than the smaller default a
	 * pthread may get. */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 8u << 20);
	for (int i = 0; i < w.nslots; i++) {
		if (pthread_create(&w.slots[i].thread, &attr, slot_main, &w.slots[i]) != 0) {
			log_error("cannot start slot %d", i);
			atomic_store(&w.stopping, 1);
			wake_slots(&w, NULL);
			break;
		}
		w.slots[i].started = 1;
	}
	pthread_attr_destroy(&attr);
	for (int i = 0; i < w.nslots; i++)
		if (w.slots[i].started)
			pthread_join(w.slots[i].thread, NULL);
	status = w.slots[w.nslots - 1].started ? 0 : 1;
	log_info("%s stopped: %ld job(s) run, %ld succeeded, %ld failed, %ld released, %ld lost", cfg->name,
		 atomic_load(&w.n_run), atomic_load(&w.n_ok), atomic_load(&w.n_failed), atomic_load(&w.n_released),
		 atomic_load(&w.n_lost));
out:
	if (sup_started) {
		atomic_store(&w.quit, 1);
		evfd_signal(w.sup_evfd);
		pthread_join(sup_thread, NULL);
	}
	if (sup.sigfd >= 0)
		close(sup.sigfd);
	if (w.sup_evfd >= 0)
		close(w.sup_evfd);
	for (int i = 0; w.slots && i < w.nslots; i++) {
		if (w.slots[i].evfd >= 0)
			close(w.slots[i].evfd);
		if (w.slots[i].log_inited)
			joblog_destroy(&w.slots[i].log);
	}
	free(w.slots);
	pthread_mutex_destroy(&w.mu);
	return status;
}
