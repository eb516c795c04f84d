/*
 * joblog_api.c — GET /v1/jobs/{id}/log: a job's log lines (workers ship them,
 * workers/joblog.c; sql/009 keeps the newest 2,000 lines / 256 KiB per job).
 *
 * Without follow, one page after ?after=SEQ as JSON. With ?follow=1, a
 * Server-Sent Events stream: an event "line" per line, then "end" with the
 * job's final state once the job has finished and every line it logged has
 * been sent. Followers are polled, one query each per JOBLOG_POLL_MS (lines
 * arrive in batches about once a second anyway), at most JOBLOG_MAX_FOLLOWERS
 * at once; a follower whose query is in flight is skipped, so a slow database
 * never piles queries up. Ownership: a follower owns its stream; it is freed
 * on the loop, never inside its own query's callback chain while the list is
 * walked (dead ones are reaped after each walk).
 */
#include "joblog_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

#define JOBLOG_POLL_MS 1000
#define JOBLOG_MAX_FOLLOWERS 64
#define JOBLOG_PAGE_DEFAULT 500
#define JOBLOG_PAGE_MAX 2000

static const char page_sql[] = "SELECT atelier_job_log_page($1::bigint, $2::bigint, $3::int)::text";

/* ---- one page ---- */

/* The query's $1..$3 from the request; 0, or -1 after replying 400. */
static int page_params(http_req_t *req, char after[24], char limit[8])
{
	const char *a = http_req_query(req, "after"), *l = http_req_query(req, "limit");
	char *end;
	long long av = a ? strtoll(a, &end, 10) : 0;
	if (a && (!a[0] || *end || av < 0)) {
		http_reply_err(req, AT_EINVAL, "after must be a line's seq (>= 0)",
			       json_pack("{ss}", "field", "after"));
		return -1;
	}
	long long lv = l ? strtoll(l, &end, 10) : JOBLOG_PAGE_DEFAULT;
	if (l && (!l[0] || *end || lv < 1 || lv > JOBLOG_PAGE_MAX)) {
		http_reply_err(req, AT_ERANGE, "limit must be 1..2000", json_pack("{ss}", "field", "limit"));
		return -1;
	}
	snprintf(after, 24, "%lld", av);
	snprintf(limit, 8, "%lld", lv);
	return 0;
}

/* ---- follow ---- */

struct follower {
	struct follower *next;
	http_stream_t *stream; /* NULL once ended: reaped */
	char job[24];
	long long after;
	int busy; /* a poll is in flight */
};

static struct {
	uv_timer_t timer;
	int timer_inited;
	int stopped;
	int count;
	int busy;
	struct follower *list;
	void (*on_closed)(void *arg);
	void *on_closed_arg;
} fl;

static void follower_end(struct follower *f, const char *event, const char *data)
{
	if (!f->stream)
		return;
	if (event) {
		char buf[160];
		int n = snprintf(buf, sizeof buf, "event: %s\ndata: %s\n\n", event, data);
		if (http_stream_write(f->stream, buf, (size_t)n) < 0) {
			/* the client left: nothing more to say */
		}
	}
	http_stream_end(f->stream);
	f->stream = NULL;
}

static void maybe_closed(void)
{
	if (fl.stopped && fl.busy == 0 && fl.on_closed && !fl.timer_inited) {
		void (*cb)(void *) = fl.on_closed;
		fl.on_closed = NULL;
		cb(fl.on_closed_arg);
	}
}

static void reap(void)
{
	struct follower **pp = &fl.list;
	while (*pp) {
		struct follower *f = *pp;
		if (!f->stream && !f->busy) {
			*pp = f->next;
			free(f);
			fl.count--;
		} else {
			pp = &f->next;
		}
	}
	if (!fl.list && fl.timer_inited && !fl.stopped)
		uv_timer_stop(&fl.timer);
}

/* Writes the page's lines as events; ends the stream when the job is over
 * and the page was its last. */
static void on_poll(void *arg, int status, PGresult *res)
{
	struct follower *f = arg;
	f->busy = 0;
	fl.busy--;
	if (fl.stopped || !f->stream) {
		follower_end(f, NULL, NULL);
	} else if (status < 0) {
		/* the database is away (or refused): try again at the next tick */
		log_debug("job log poll for job %s: %s", f->job, at_strerror(status));
	} else if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
		follower_end(f, "end", "{\"state\":null,\"error\":\"no such job\"}");
	} else {
		json_t *page = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		json_t *lines = json_object_get(page, "lines");
		size_t i;
		json_t *line;
		int ok = 1;
		json_array_foreach(lines, i, line)
		{
			char *text = json_dumps(line, JSON_COMPACT);
			ok = text && http_stream_write(f->stream, "event: line\ndata: ", 18) == 0 &&
			     http_stream_write(f->stream, text, strlen(text)) == 0 &&
			     http_stream_write(f->stream, "\n\n", 2) == 0;
			free(text);
			if (!ok)
				break;
		}
		const char *state = json_string_value(json_object_get(page, "state"));
		f->after = json_integer_value(json_object_get(page, "next_after"));
		if (!ok) {
			follower_end(f, NULL, NULL); /* gone, or too slow to keep up */
		} else if (json_array_size(lines) == 0 && state &&
			   (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"))) {
			char data[64];
			snprintf(data, sizeof data, "{\"state\":\"%s\"}", state);
			follower_end(f, "end", data);
		} else if (json_array_size(lines) == 0 && http_stream_write(f->stream, ": ping\n\n", 8) < 0) {
			follower_end(f, NULL, NULL);
		}
		json_decref(page);
	}
	reap();
	maybe_closed();
}

static void poll_one(struct app *app, struct follower *f)
{
	if (f->busy || !f->stream)
		return;
	if (!http_stream_alive(f->stream)) {
		follower_end(f, NULL, NULL);
		return;
	}
	char after[24];
	snprintf(after, sizeof after, "%lld", f->after);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, f->job);
	db_param_text(&p, after);
	db_param_text(&p, "500");
	if (db_query(app->db, page_sql, &p, on_poll, f) == 0) {
		f->busy = 1;
		fl.busy++;
	}
}

static void on_tick(uv_timer_t *t)
{
	struct app *app = t->data;
	for (struct follower *f = fl.list; f; f = f->next)
		poll_one(app, f);
	reap();
}

static void follow(http_req_t *req, const char *job, long long after)
{
	struct app *app = http_req_app(req);
	if (fl.stopped || app->shutting_down) {
		http_reply_err(req, AT_EUNAVAILABLE, "shutting down", NULL);
		return;
	}
	if (fl.count >= JOBLOG_MAX_FOLLOWERS) {
		http_reply_err(req, AT_EUNAVAILABLE, "too many log followers; try again later",
			       json_pack("{si}", "max", JOBLOG_MAX_FOLLOWERS));
		return;
	}
	struct follower *f = calloc(1, sizeof *f);
	if (!f) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	if (!fl.timer_inited) {
		uv_timer_init(app->loop, &fl.timer);
		fl.timer.data = app;
		fl.timer_inited = 1;
	}
	snprintf(f->job, sizeof f->job, "%s", job); /* job belongs to req, which the stream consumes */
	f->stream = http_stream_start(req, 200, "text/event-stream");
	if (!f->stream) {
		free(f);
		return;
	}
	f->after = after;
	f->next = fl.list;
	fl.list = f;
	fl.count++;
	static const char hello[] = "retry: 2000\nevent: hello\ndata: {}\n\n";
	if (http_stream_write(f->stream, hello, sizeof hello - 1) < 0) {
		/* gone already: the first poll ends it */
	}
	poll_one(app, f);
	if (!uv_is_active((uv_handle_t *)&fl.timer))
		uv_timer_start(&fl.timer, on_tick, JOBLOG_POLL_MS, JOBLOG_POLL_MS);
}

static void timer_closed(uv_handle_t *h)
{
	(void)h;
	fl.timer_inited = 0;
	maybe_closed();
}

void joblog_api_stop(void (*on_closed)(void *arg), void *arg)
{
	fl.stopped = 1;
	fl.on_closed = on_closed;
	fl.on_closed_arg = arg;
	for (struct follower *f = fl.list; f; f = f->next)
		follower_end(f, NULL, NULL);
	reap(); /* followers with a query in flight go when it answers */
	if (fl.timer_inited) {
		uv_timer_stop(&fl.timer);
		uv_close((uv_handle_t *)&fl.timer, timer_closed);
	} else {
		maybe_closed();
	}
}

/* ---- the route ---- */

static void get_job_log(http_req_t *req)
{
	const char *job = http_req_param(req, "id");
	if (!api_positive_id(req, job, "id"))
		return;
	char after[24], limit[8];
	if (page_params(req, after, limit) < 0)
		return;
	const char *fw = http_req_query(req, "follow");
	if (fw && (!strcmp(fw, "1") || !strcmp(fw, "true"))) {
		follow(req, job, strtoll(after, NULL, 10));
		return;
	}
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, job);
	db_param_text(&p, after);
	db_param_text(&p, limit);
	api_reply_sql_json(req, page_sql, &p, "no such job");
}

#define S_LINE                                                                                                        \
	API_OBJECT("\"seq\":" API_INT ",\"ts\":" API_NULL_TIME ",\"level\":{\"type\":\"string\",\"enum\":[\"debug\"," \
		   "\"info\",\"warn\",\"error\"]},\"text\":" API_STR)

const struct http_route joblog_api_routes[] = {
	{"GET", "/v1/jobs/{id}/log", get_job_log, ROLE_ANY,
	 "a job's log lines after ?after=SEQ; ?follow=1 streams them (SSE) until the job ends", .op = "getJobLog",
	 .tag = "pipelines",
	 .params =
		 "{\"id\":" API_ID ",\"after\":{\"type\":\"integer\",\"minimum\":0,\"default\":0,\"description\":"
		 "\"the seq of the last line already read\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":2000,"
		 "\"default\":500},\"follow\":{\"type\":\"string\",\"enum\":[\"1\",\"true\"],\"description\":"
		 "\"stream new lines as Server-Sent Events (event line: a line; event end: {state}) until the job ends\"}}",
	 .reply = "{\"application/json\":" API_OBJECT(
		 "\"job\":" API_INT ",\"state\":" API_STR
		 ",\"dropped\":{\"type\":\"integer\",\"description\":\"older lines "
		 "no longer kept (a marker line says so on the first page)\"},\"lines\":" API_ARRAY(
			 S_LINE) ",\"next_after\":" API_INT) ",\"text/event-stream\":" HTTP_TEXT "}"},
};
const size_t joblog_api_nroutes = sizeof joblog_api_routes / sizeof joblog_api_routes[0];
