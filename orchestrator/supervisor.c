/*
 * supervisor.c — local worker processes. See supervisor.h.
 *
 * Each slot owns a restart timer for the daemon's life and a uv_process_t per
 * spawn (closed after the process exits, before the next spawn reuses it). A
 * worker that exits while we are not stopping is restarted after a delay that
 * doubles with each quick death (1 s .. 30 s) and resets once a worker has
 * lived a minute. Stopping sends SIGTERM (workers finish or release their
 * job), then SIGKILL after 15 s; the supervisor is freed when every handle it
 * opened has closed (open_handles counts them).
 */
#include "supervisor.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct slot {
	struct supervisor *sup;
	int index;
	uv_process_t proc;
	int running;
	uv_timer_t restart;
	uint64_t started_ms;
	int delay_ms;
};

struct supervisor {
	struct app *app;
	int n;
	struct slot *slots;
	char bin[PATH_MAX];
	int stopping;
	int kill_closed;
	uv_timer_t kill_timer;
	int open_handles;
	void (*on_closed)(void *);
	void *closed_arg;
};

static void slot_spawn(struct slot *sl);
int supervisor_running(const struct supervisor *s);

static void sup_handle_closed(struct supervisor *s)
{
	if (--s->open_handles > 0 || !s->stopping)
		return;
	void (*cb)(void *) = s->on_closed;
	void *arg = s->closed_arg;
	free(s->slots);
	free(s);
	if (cb)
		cb(arg);
}

static void restart_cb(uv_timer_t *t) { slot_spawn(t->data); }
static void kill_timer_closed(uv_handle_t *h) { sup_handle_closed(h->data); }

static void close_kill_timer(struct supervisor *s)
{
	if (s->kill_closed)
		return;
	s->kill_closed = 1;
	uv_timer_stop(&s->kill_timer);
	uv_close((uv_handle_t *)&s->kill_timer, kill_timer_closed);
}

static void proc_closed(uv_handle_t *h)
{
	struct slot *sl = h->data;
	struct supervisor *s = sl->sup;
	if (!s->stopping)
		uv_timer_start(&sl->restart, restart_cb, (uint64_t)sl->delay_ms, 0);
	else if (supervisor_running(s) == 0)
		close_kill_timer(s);
	sup_handle_closed(s);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct slot *sl = p->data;
	struct supervisor *s = sl->sup;
	sl->running = 0;
	if (!s->stopping) {
		uint64_t lived = uv_now(s->app->loop) - sl->started_ms;
		sl->delay_ms = lived > 60000 ? 1000 : (sl->delay_ms ? sl->delay_ms * 2 : 1000);
		if (sl->delay_ms > 30000)
			sl->delay_ms = 30000;
		log_warn("local worker %d exited (status %lld, signal %d); restarting in %d ms", sl->index,
			 (long long)status, sig, sl->delay_ms);
	}
	uv_close((uv_handle_t *)p, proc_closed);
}

static void slot_spawn(struct slot *sl)
{
	struct supervisor *s = sl->sup;
	if (s->stopping)
		return;
	char name[64], *args[4];
	snprintf(name, sizeof name, "--name=local-%d-%d", (int)getpid(), sl->index);
	args[0] = s->bin;
	args[1] = name;
	args[2] = NULL;
	uv_process_options_t o = {0};
	uv_stdio_container_t stdio[3];
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 1;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	o.file = s->bin;
	o.args = args;
	o.exit_cb = on_exit_cb;
	o.stdio = stdio;
	o.stdio_count = 3;
	/* environ is inherited: ATELIER_DATABASE_URL and friends reach the worker;
	 * the URL given as a flag is passed on through the environment too. */
	if (s->app->cfg.database_url)
		setenv("ATELIER_DATABASE_URL", s->app->cfg.database_url, 1);
	char ppid[24];
	snprintf(ppid, sizeof ppid, "%d", (int)getpid());
	setenv("ATELIER_PARENT_PID", ppid, 1); /* the worker exits when we do */
	sl->proc.data = sl;
	int rc = uv_spawn(s->app->loop, &sl->proc, &o);
	if (rc < 0) {
		log_error("cannot start %s: %s; retrying in 5 s", s->bin, uv_strerror(rc));
		/* uv_spawn failure still initialised the handle: close it, restart later */
		sl->delay_ms = 5000;
		s->open_handles++;
		uv_close((uv_handle_t *)&sl->proc, proc_closed);
		return;
	}
	s->open_handles++;
	sl->running = 1;
	sl->started_ms = uv_now(s->app->loop);
	log_info("local worker %d started (pid %d)", sl->index, sl->proc.pid);
}

static void find_worker(struct supervisor *s, const char *given)
{
	if (given) {
		snprintf(s->bin, sizeof s->bin, "%s", given);
		return;
	}
	/* beside this binary: build/bin/atelierd -> build/bin/atelier-worker */
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(s->bin, sizeof s->bin, "%s/atelier-worker", exe);
			if (access(s->bin, X_OK) == 0)
				return;
		}
	}
	snprintf(s->bin, sizeof s->bin, "atelier-worker");
}

int supervisor_start(struct app *app, int n, const char *worker_bin, struct supervisor **out)
{
	struct supervisor *s = calloc(1, sizeof *s);
	if (!s)
		return AT_ENOMEM;
	s->slots = calloc((size_t)n, sizeof *s->slots);
	if (!s->slots) {
		free(s);
		return AT_ENOMEM;
	}
	s->app = app;
	s->n = n;
	find_worker(s, worker_bin);
	uv_timer_init(app->loop, &s->kill_timer);
	s->kill_timer.data = s;
	s->open_handles = 1;
	for (int i = 0; i < n; i++) {
		struct slot *sl = &s->slots[i];
		sl->sup = s;
		sl->index = i;
		uv_timer_init(app->loop, &sl->restart);
		sl->restart.data = sl;
		s->open_handles++;
		slot_spawn(sl);
	}
	*out = s;
	return 0;
}

int supervisor_running(const struct supervisor *s)
{
	int n = 0;
	for (int i = 0; s && i < s->n; i++)
		n += s->slots[i].running;
	return n;
}

static void slot_timer_closed(uv_handle_t *h) { sup_handle_closed(((struct slot *)h->data)->sup); }

static void kill_cb(uv_timer_t *t)
{
	struct supervisor *s = t->data;
	for (int i = 0; i < s->n; i++)
		if (s->slots[i].running) {
			log_warn("local worker %d did not stop in time: SIGKILL", i);
			uv_process_kill(&s->slots[i].proc, SIGKILL);
		}
	close_kill_timer(s);
}

void supervisor_stop(struct supervisor *s, void (*on_closed)(void *), void *arg)
{
	if (!s) {
		if (on_closed)
			on_closed(arg);
		return;
	}
	s->stopping = 1;
	s->on_closed = on_closed;
	s->closed_arg = arg;
	int any = 0;
	for (int i = 0; i < s->n; i++) {
		struct slot *sl = &s->slots[i];
		uv_timer_stop(&sl->restart);
		uv_close((uv_handle_t *)&sl->restart, slot_timer_closed);
		if (sl->running) {
			uv_process_kill(&sl->proc, SIGTERM);
			any = 1;
		}
	}
	if (any)
		uv_timer_start(&s->kill_timer, kill_cb, 15000, 0);
	else
		close_kill_timer(s);
}
