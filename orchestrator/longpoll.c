/*
 * longpoll.c — the long-poll hub serving nodes wait on (see longpoll.h).
 *
 * A request for a channel that does not (yet) point past the client's `after`
 * version is parked on a list with a timer for its `wait`. Every channel move
 * NOTIFYs atelier_channels (from any atelierd or worker); the hub then reads
 * that channel once and answers every parked request on it, so a promotion
 * costs one query however many nodes wait. A parked request costs its
 * http_req_t and one uv_timer. A move that lands between a request's first
 * read and its parking is caught by a sequence number: if any notification
 * arrived meanwhile, the request reads again instead of parking.
 */
#include "longpoll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "api.h"

#define LP_MAX_WAIT_S 120

struct waiter {
	struct waiter *prev, *next;
	struct longpoll *lp;
	http_req_t *req;
	char model[64];
	char channel[16];
	long long after;
	uint64_t deadline_ms; /* loop time when the wait runs out */
	uv_timer_t timer;     /* runs only while parked: a read in flight is never timed out under it */
	int parked;
	uint64_t seq_at_read;
};

struct longpoll {
	struct app *app;
	struct waiter waiters; /* list head */
	size_t nwaiters;
	uint64_t notify_seq;
	uint64_t answered_by_notify;
	int closing;
};

/* One row per known model (none: 404); the version columns are NULL while
 * the channel points nowhere yet, which is waited on like "not moved". */
static const char channel_sql[] =
	"SELECT json_build_object('model', c.model, 'channel', c.channel, 'version', v.version, "
	"'version_id', v.id, 'sha256', v.sha256, 'size', v.size, 'artifact', '/v1/artifacts/' || v.sha256)::text, "
	"v.version FROM models m LEFT JOIN channels c ON c.model = m.name AND c.channel = $2 "
	"LEFT JOIN model_versions v ON v.id = c.version_id WHERE m.name = $1";

static void waiter_timer_closed(uv_handle_t *h)
{
	struct waiter *w = h->data;
	free(w);
}

/* Unpark and free (the timer closes first). The request must be answered already. */
static void waiter_done(struct waiter *w)
{
	if (w->parked) {
		w->prev->next = w->next;
		w->next->prev = w->prev;
		w->lp->nwaiters--;
		w->parked = 0;
	}
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, waiter_timer_closed);
}

static void waiter_timeout(uv_timer_t *t)
{
	struct waiter *w = t->data;
	http_reply_empty(w->req, 304);
	waiter_done(w);
}

static void waiter_reply(struct waiter *w, const char *json, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		http_reply_err(w->req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	memcpy(copy, json, len);
	copy[len] = '\n';
	http_reply_owned(w->req, 200, "application/json", copy, len + 1);
}

static void waiter_read(struct waiter *w);

static void on_channel_read(void *arg, int status, PGresult *res)
{
	struct waiter *w = arg;
	if (status < 0) {
		http_reply_err(w->req, AT_EDB, "database unavailable", NULL);
		waiter_done(w);
		return;
	}
	if (PQntuples(res) == 0) {
		/* a channel of a model nobody registered would otherwise wait and 304 forever */
		http_reply_err(w->req, AT_ENOTFOUND, "no such model", json_pack("{ss}", "model", w->model));
		waiter_done(w);
		return;
	}
	if (!PQgetisnull(res, 0, 1)) {
		long long v = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		if (v != w->after) {
			waiter_reply(w, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
			waiter_done(w);
			return;
		}
	}
	if (w->lp->notify_seq != w->seq_at_read) {
		/* a move was announced while we read: read again rather than park */
		waiter_read(w);
		return;
	}
	uint64_t now = uv_now(w->lp->app->loop);
	if (w->lp->closing || now >= w->deadline_ms) {
		http_reply_empty(w->req, 304);
		waiter_done(w);
		return;
	}
	/* park until a move or the wait runs out */
	struct longpoll *r = w->lp;
	uv_timer_start(&w->timer, waiter_timeout, w->deadline_ms - now, 0);
	w->next = r->waiters.next;
	w->prev = &r->waiters;
	w->next->prev = w;
	r->waiters.next = w;
	r->nwaiters++;
	w->parked = 1;
}

static void waiter_read(struct waiter *w)
{
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, w->model);
	db_param_text(&p, w->channel);
	w->seq_at_read = w->lp->notify_seq;
	if (db_query(w->lp->app->db, channel_sql, &p, on_channel_read, w) < 0) {
		http_reply_err(w->req, AT_EDB, "database unavailable", NULL);
		waiter_done(w);
	}
}

struct broadcast {
	struct longpoll *lp;
	char model[64];
	char channel[16];
};

static void on_broadcast_read(void *arg, int status, PGresult *res)
{
	struct broadcast *b = arg;
	struct longpoll *r = b->lp;
	if (status == 0 && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
		long long v = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		struct waiter *w = r->waiters.next;
		while (w != &r->waiters) {
			struct waiter *next = w->next;
			if (!strcmp(w->model, b->model) && !strcmp(w->channel, b->channel) && w->after != v) {
				waiter_reply(w, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
				waiter_done(w);
				r->answered_by_notify++;
			}
			w = next;
		}
	}
	free(b);
}

static void broadcast(struct longpoll *r, const char *model, const char *channel)
{
	struct broadcast *b = calloc(1, sizeof *b);
	if (!b)
		return;
	b->lp = r;
	snprintf(b->model, sizeof b->model, "%s", model);
	snprintf(b->channel, sizeof b->channel, "%s", channel);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, b->model);
	db_param_text(&p, b->channel);
	if (db_query(r->app->db, channel_sql, &p, on_broadcast_read, b) < 0)
		free(b);
}

/* payload "model:channel:version"; channel NULL = the listen connection came back */
static void on_channels_notify(void *arg, const char *channel, const char *payload)
{
	struct longpoll *r = arg;
	r->notify_seq++;
	if (!channel) {
		/* we may have missed moves: re-read every parked (model, channel) */
		for (struct waiter *w = r->waiters.next; w != &r->waiters; w = w->next) {
			int seen = 0;
			for (struct waiter *x = r->waiters.next; x != w; x = x->next)
				seen |= !strcmp(x->model, w->model) && !strcmp(x->channel, w->channel);
			if (!seen)
				broadcast(r, w->model, w->channel);
		}
		return;
	}
	char model[64], ch[16];
	const char *c1 = strchr(payload, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2 || (size_t)(c1 - payload) >= sizeof model || (size_t)(c2 - c1 - 1) >= sizeof ch)
		return;
	snprintf(model, sizeof model, "%.*s", (int)(c1 - payload), payload);
	snprintf(ch, sizeof ch, "%.*s", (int)(c2 - c1 - 1), c1 + 1);
	broadcast(r, model, ch);
}

static void get_channel(http_req_t *req)
{
	struct longpoll *r = ((struct app *)http_req_app(req))->longpoll;
	const char *model = http_req_param(req, "name"), *channel = http_req_param(req, "channel");
	const char *after = http_req_query(req, "after"), *wait = http_req_query(req, "wait");
	if (!registry_valid_channel(channel)) {
		http_reply_err(req, AT_ENOTFOUND, "no such channel (canary or production)",
			       json_pack("{ss}", "channel", channel));
		return;
	}
	if (strlen(model) >= 64) {
		http_reply_err(req, AT_ENOTFOUND, "no such model", NULL);
		return;
	}
	int64_t a = 0, ws = 0;
	if (after && strcmp(after, "0") != 0 && http_parse_id(after, &a) < 0) {
		http_reply_err(req, AT_EINVAL, "after must be a version number", json_pack("{ss}", "field", "after"));
		return;
	}
	if (wait && strcmp(wait, "0") != 0 && (http_parse_id(wait, &ws) < 0 || ws > LP_MAX_WAIT_S)) {
		http_reply_err(req, AT_ERANGE, "wait must be 0..120 seconds", json_pack("{ss}", "field", "wait"));
		return;
	}
	struct waiter *w = calloc(1, sizeof *w);
	if (!w) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	w->lp = r;
	w->req = req;
	w->after = a;
	snprintf(w->model, sizeof w->model, "%s", model);
	snprintf(w->channel, sizeof w->channel, "%s", channel);
	uv_timer_init(r->app->loop, &w->timer);
	w->timer.data = w;
	w->deadline_ms = uv_now(r->app->loop) + (uint64_t)ws * 1000;
	waiter_read(w);
}

/* ---- life ---- */

int longpoll_start(struct app *app, struct longpoll **out)
{
	struct longpoll *r = calloc(1, sizeof *r);
	if (!r)
		return AT_ENOMEM;
	r->app = app;
	r->waiters.next = r->waiters.prev = &r->waiters;
	int rc = db_listen(app->db, "atelier_channels", on_channels_notify, r);
	if (rc < 0) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void longpoll_stop(struct longpoll *r)
{
	if (!r)
		return;
	r->closing = 1;
	/* answer every parked long-poll now (304), so shutdown does not wait for them */
	while (r->waiters.next != &r->waiters) {
		struct waiter *w = r->waiters.next;
		http_reply_empty(w->req, 304);
		waiter_done(w);
	}
}

void longpoll_free(struct longpoll *r) { free(r); }

int longpoll_metrics(const struct longpoll *r, struct at_buf *b)
{
	return at_buf_printf(b,
			     "# HELP atelier_longpoll_waiting Serving-node long-polls held open.\n"
			     "# TYPE atelier_longpoll_waiting gauge\natelier_longpoll_waiting %zu\n"
			     "# HELP atelier_longpoll_notified_total Long-polls answered by a channel move.\n"
			     "# TYPE atelier_longpoll_notified_total counter\natelier_longpoll_notified_total %llu\n",
			     r ? r->nwaiters : 0, (unsigned long long)(r ? r->answered_by_notify : 0));
}

const struct http_route longpoll_routes[] = {
	{"GET", "/v1/models/{name}/channels/{channel}", get_channel, ROLE_ANY,
	 "a channel's version; ?after=V&wait=S holds until it moves past V (else 304)", .op = "getChannel",
	 .tag = "registry",
	 .params = "{\"channel\":{\"type\":\"string\",\"enum\":[\"canary\",\"production\"]},"
		   "\"after\":{\"type\":\"integer\",\"description\":\"the version the caller has\"},"
		   "\"wait\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120,\"description\":\"seconds to hold "
		   "the request while the channel is still at after\"}}",
	 .reply = HTTP_JSON(API_OBJECT("\"model\":" API_STR ",\"channel\":" API_STR ",\"version\":" API_INT
				       ",\"version_id\":" API_INT ",\"sha256\":" API_SHA256 ",\"size\":" API_INT
				       ",\"artifact\":{\"type\":\"string\",\"description\":\"the download's path\"}")),
	 .replies = "{\"304\":{\"description\":\"the channel did not move past after within wait\"}}"},
};
const size_t longpoll_nroutes = sizeof longpoll_routes / sizeof longpoll_routes[0];
