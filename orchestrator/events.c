/*
 * events.c — the Server-Sent Events hub (see events.h). The LISTEN is taken
 * with the first subscriber (an atelierd nobody watches does not listen);
 * from then on every atelier_runs payload goes to each subscriber whose run
 * filter matches. A stream that cannot take a write (gone, or too slow: its
 * buffer is full) is ended and dropped at once.
 */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS_PING_MS 15000

struct subscriber {
	struct subscriber *next;
	http_stream_t *stream;
	long long run; /* 0 = all runs */
};

struct events {
	struct app *app;
	struct subscriber *subs;
	uv_timer_t ping; /* initialised at start, so stop always closes it */
	int listening;
	int count;
	int stopped;
	void (*on_closed)(void *arg);
	void *on_closed_arg;
};

/* Ends and frees every subscriber whose stream was marked dead (NULL). */
static void events_reap(struct events *e)
{
	struct subscriber **pp = &e->subs;
	while (*pp) {
		if (!(*pp)->stream) {
			struct subscriber *d = *pp;
			*pp = d->next;
			free(d);
			e->count--;
		} else {
			pp = &(*pp)->next;
		}
	}
}

static void events_broadcast(struct events *e, const char *event, const char *data, long long run)
{
	char head[64];
	int hn = snprintf(head, sizeof head, "event: %s\ndata: ", event);
	for (struct subscriber *s = e->subs; s; s = s->next) {
		if (s->run && run && s->run != run)
			continue;
		if (http_stream_write(s->stream, head, (size_t)hn) < 0 ||
		    http_stream_write(s->stream, data, strlen(data)) < 0 ||
		    http_stream_write(s->stream, "\n\n", 2) < 0) {
			/* gone or too slow to keep up: dropped below */
			http_stream_end(s->stream);
			s->stream = NULL;
		}
	}
	events_reap(e);
}

static void on_runs_notify(void *arg, const char *channel, const char *payload)
{
	struct events *e = arg;
	if (!channel || e->stopped)
		return;
	json_t *j = json_loads(payload, 0, NULL);
	long long run = j ? json_integer_value(json_object_get(j, "run")) : 0;
	json_decref(j);
	events_broadcast(e, "run", payload, run);
}

static void events_ping(uv_timer_t *t)
{
	struct events *e = t->data;
	for (struct subscriber *s = e->subs; s; s = s->next)
		if (http_stream_write(s->stream, ": ping\n\n", 8) < 0) {
			/* the stream is dead or stuck: a dead one is dropped just below */
		}
	for (struct subscriber *s = e->subs; s; s = s->next)
		if (!http_stream_alive(s->stream)) {
			http_stream_end(s->stream);
			s->stream = NULL;
		}
	events_reap(e);
}

int events_start(struct app *app, struct events **out)
{
	struct events *e = calloc(1, sizeof *e);
	if (!e)
		return AT_ENOMEM;
	e->app = app;
	uv_timer_init(app->loop, &e->ping);
	e->ping.data = e;
	*out = e;
	return 0;
}

void events_subscribe(struct events *e, http_req_t *req, long long run)
{
	if (e->stopped) {
		http_reply_err(req, AT_EUNAVAILABLE, "shutting down", NULL);
		return;
	}
	if (!e->listening) {
		if (db_listen(e->app->db, "atelier_runs", on_runs_notify, e) < 0) {
			http_reply_err(req, AT_EDB, "database unavailable", NULL);
			return;
		}
		uv_timer_start(&e->ping, events_ping, EVENTS_PING_MS, EVENTS_PING_MS);
		e->listening = 1;
	}
	struct subscriber *s = calloc(1, sizeof *s);
	if (!s) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	s->stream = http_stream_start(req, 200, "text/event-stream");
	if (!s->stream) {
		free(s);
		return;
	}
	s->run = run;
	s->next = e->subs;
	e->subs = s;
	e->count++;
	static const char hello[] = "retry: 2000\nevent: hello\ndata: {}\n\n";
	if (http_stream_write(s->stream, hello, sizeof hello - 1) < 0) {
		/* the client is already gone: the next ping drops it */
	}
}

static void events_timer_closed(uv_handle_t *h)
{
	struct events *e = h->data;
	if (e->on_closed)
		e->on_closed(e->on_closed_arg);
}

void events_stop(struct events *e, void (*on_closed)(void *arg), void *arg)
{
	e->stopped = 1;
	while (e->subs) {
		struct subscriber *s = e->subs;
		e->subs = s->next;
		http_stream_end(s->stream);
		free(s);
	}
	e->count = 0;
	e->on_closed = on_closed;
	e->on_closed_arg = arg;
	uv_timer_stop(&e->ping);
	uv_close((uv_handle_t *)&e->ping, events_timer_closed);
}

void events_free(struct events *e) { free(e); }
