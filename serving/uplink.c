/*
 * uplink.c — heartbeats and spool delivery (see uplink.h).
 *
 * The thread sleeps on a condition variable until the next heartbeat is due
 * or the spool has work whose backoff has expired; uplink_notify() and stop
 * wake it. One thing at a time: a contribution being sent delays a heartbeat
 * by at most the call's timeout, which is far below what atelierd allows
 * before it calls a node silent.
 */
#include "uplink.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgthread.h"
#include "http_client.h"
#include "log.h"
#include "model_slot.h"
#include "publish.h"
#include "serve.h"
#include "spool.h"
#include "stats.h"

#define CALL_TIMEOUT 15L

struct uplink {
	struct serve_app *app;
	struct bgthread bg; /* the thread, its stop flag, mu and cv */
	int woken;
	struct http_client client;
	/* thread-only */
	double backoff, next_try;
	/* under mu */
	uint64_t hb_ok, hb_fail, delivered, rejected, retries;
};

static int stopping(struct uplink *u) { return bgthread_stopping(&u->bg); }

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count(struct uplink *u, uint64_t *c)
{
	pthread_mutex_lock(&u->bg.mu);
	(*c)++;
	pthread_mutex_unlock(&u->bg.mu);
}

/* ---- heartbeat ---- */

static int heartbeat(struct uplink *u)
{
	struct serve_app *app = u->app;
	struct model_slot_info mi;
	struct stats_snapshot ss;
	model_slot_info(app->slot, &mi);
	stats_snapshot(app->stats, &ss);
	int spool_files = 0;
	if (app->spool)
		spool_depth(app->spool, &spool_files, NULL);
	json_t *o = json_pack("{ss,ss,ss,so,sI,sI,sf,sf,sf,sI,so,ss,sI,sI,si,ss}", "node", app->name, "channel",
			      app->cfg.channel, "model", app->cfg.model, "version",
			      mi.loaded && mi.version > 0 ? json_integer(mi.version) : json_null(), "requests",
			      (json_int_t)ss.requests, "errors", (json_int_t)ss.errors, "error_rate", ss.error_rate,
			      "p50_ms", ss.p50_ms, "p95_ms", ss.p95_ms, "started_at", (json_int_t)app->started_at,
			      "last_error", mi.last_error[0] ? json_string(mi.last_error) : json_null(), "sha256",
			      mi.sha256, "swaps", (json_int_t)mi.swaps, "swap_failures", (json_int_t)mi.swap_failures,
			      "spool_depth", spool_files, "device", mi.loaded ? mi.device : "");
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!body)
		return AT_ENOMEM;
	struct http_client_resp r;
	http_client_resp_init(&r, 64 << 10);
	int rc = http_client_call(&u->client,
				  &(struct http_client_req){.path = "/v1/nodes/heartbeat",
							    .content_type = "application/json",
							    .body = body,
							    .len = strlen(body),
							    .timeout_s = CALL_TIMEOUT},
				  &r);
	free(body);
	int ok = rc == 0 && r.status >= 200 && r.status < 300;
	if (!ok && rc != AT_ECANCELLED) {
		if (rc == 0)
			log_warn("uplink: heartbeat answered %ld: %.200s", r.status, r.body.data ? r.body.data : "");
		else
			log_debug("uplink: heartbeat: %s", r.error);
	}
	count(u, ok ? &u->hb_ok : &u->hb_fail);
	http_client_resp_free(&r);
	return ok ? 0 : AT_EUNAVAILABLE;
}

/* ---- spool delivery ---- */

struct form {
	json_t *meta;
	const uint8_t *img;
	size_t len;
	const char *source;
};

static curl_mime *build_form(CURL *h, void *arg)
{
	struct form *f = arg;
	curl_mime *m = curl_mime_init(h);
	if (!m)
		return NULL;
	const char *ct = json_string_value(json_object_get(f->meta, "content_type"));
	const char *who = json_string_value(json_object_get(f->meta, "contributor"));
	const char *receipt = json_string_value(json_object_get(f->meta, "receipt_sha256"));
	curl_mimepart *p = curl_mime_addpart(m);
	curl_mime_name(p, "image");
	curl_mime_data(p, (const char *)f->img, f->len);
	curl_mime_filename(p, ct && strcmp(ct, "image/jpeg") == 0 ? "sketch.jpg" : "sketch.png");
	curl_mime_type(p, ct ? ct : "image/png");
	p = curl_mime_addpart(m);
	curl_mime_name(p, "consent");
	curl_mime_data(p, "true", CURL_ZERO_TERMINATED);
	p = curl_mime_addpart(m);
	curl_mime_name(p, "source");
	curl_mime_data(p, f->source, CURL_ZERO_TERMINATED);
	if (who) {
		p = curl_mime_addpart(m);
		curl_mime_name(p, "contributor");
		curl_mime_data(p, who, CURL_ZERO_TERMINATED);
	}
	if (receipt) {
		p = curl_mime_addpart(m);
		curl_mime_name(p, "receipt_sha256");
		curl_mime_data(p, receipt, CURL_ZERO_TERMINATED);
	}
	return m;
}

static int retryable(long status)
{
	return status >= 500 || status == 401 || status == 403 || status == 404 || status == 408 || status == 409 ||
	       status == 429 || status < 200;
}

/* atelierd's per-contributor daily cap (429 RATELIMITED, detail field
 * "contributor") refuses this contribution, not the node: kept, it would hold
 * up the whole spool behind it for a day. So it is dropped like a rejection. */
static int contributor_capped(const struct http_client_resp *r)
{
	if (r->status != 429 || !r->body.data)
		return 0;
	json_t *o = json_loadb((const char *)r->body.data, r->body.len, 0, NULL);
	const char *code = json_string_value(json_object_get(o, "code"));
	const char *field = json_string_value(json_object_get(json_object_get(o, "detail"), "field"));
	int capped = code && field && strcmp(code, "RATELIMITED") == 0 && strcmp(field, "contributor") == 0;
	json_decref(o);
	return capped;
}

static void schedule_retry(struct uplink *u)
{
	u->backoff = u->backoff <= 0 ? 0.5 : u->backoff * 2;
	if (u->backoff > u->app->cfg.retry_max)
		u->backoff = u->app->cfg.retry_max;
	u->next_try = now_s() + u->backoff;
	count(u, &u->retries);
}

/* Sends oldest first until the spool is empty, a retryable failure, or stop. */
static void drain(struct uplink *u)
{
	struct spool *s = u->app->spool;
	char source[160];
	snprintf(source, sizeof source, "node:%s", u->app->name);
	/* published works first: their own spool and route (publish.c) */
	int prc = publish_drain(u->app, &u->client);
	if (prc == AT_ECANCELLED)
		return;
	if (prc < 0) {
		schedule_retry(u);
		return;
	}
	while (!stopping(u)) {
		char path[4096];
		if (spool_oldest(s, path, sizeof path) < 0) {
			u->backoff = 0;
			return;
		}
		struct form f = {.source = source};
		uint8_t *img = NULL;
		/* withdrawn by its receipt since the listing: nothing to send */
		if (spool_send_begin(s, path) < 0)
			continue;
		int rc = spool_read(path, &f.meta, &img, &f.len);
		if (rc == AT_ECORRUPT) {
			log_error("uplink: dropping unreadable spool file %s", path);
			spool_remove(s, path);
			spool_send_end(s);
			continue;
		}
		if (rc < 0) {
			spool_send_end(s);
			schedule_retry(u);
			return;
		}
		f.img = img;
		struct http_client_resp r;
		http_client_resp_init(&r, 64 << 10);
		rc = http_client_call(&u->client,
				      &(struct http_client_req){.path = "/v1/sketches",
								.form = build_form,
								.form_arg = &f,
								.timeout_s = CALL_TIMEOUT},
				      &r);
		json_decref(f.meta);
		free(img);
		if (rc == AT_ECANCELLED) {
			spool_send_end(s);
			http_client_resp_free(&r);
			return;
		}
		if (rc < 0 || (retryable(r.status) && !contributor_capped(&r))) {
			if (rc < 0)
				log_debug("uplink: atelierd unreachable (%s); %s stays in the spool", r.error, path);
			else
				log_warn("uplink: POST /v1/sketches answered %ld; keeping the contribution: %.200s",
					 r.status, r.body.data ? r.body.data : "");
			http_client_resp_free(&r);
			spool_send_end(s);
			schedule_retry(u);
			return;
		}
		if (r.status >= 200 && r.status < 300) {
			count(u, &u->delivered);
			log_debug("uplink: delivered %s (%ld)", path, r.status);
		} else {
			count(u, &u->rejected);
			log_warn("uplink: atelierd rejected a contribution (%ld): %.200s", r.status,
				 r.body.data ? r.body.data : "");
		}
		http_client_resp_free(&r);
		spool_remove(s, path);
		spool_send_end(s);
		u->backoff = 0;
	}
}

static int spool_waiting(struct uplink *u)
{
	return (u->app->spool && spool_ready(u->app->spool) > 0) || publish_waiting(u->app->publish) > 0;
}

static void *run(void *arg)
{
	struct uplink *u = arg;
	double next_hb = now_s();
	while (!stopping(u)) {
		pthread_mutex_lock(&u->bg.mu);
		for (;;) {
			double now = now_s();
			int spool_due = spool_waiting(u) && now >= u->next_try;
			if (stopping(u) || now >= next_hb || spool_due)
				break;
			double until = next_hb;
			if (spool_waiting(u) && u->next_try < until)
				until = u->next_try;
			struct timespec ts = {.tv_sec = (time_t)until,
					      .tv_nsec = (long)((until - (double)(time_t)until) * 1e9)};
			u->woken = 0;
			while (!u->woken && !stopping(u) && pthread_cond_timedwait(&u->bg.cv, &u->bg.mu, &ts) == 0)
				;
		}
		pthread_mutex_unlock(&u->bg.mu);
		if (stopping(u))
			break;
		double now = now_s();
		if (now >= next_hb) {
			next_hb = now + u->app->cfg.heartbeat_interval;
			if (heartbeat(u) == 0 && u->backoff > 0)
				u->next_try = now; /* atelierd is back: no need to wait out the backoff */
		}
		if (spool_waiting(u) && now_s() >= u->next_try)
			drain(u);
	}
	return NULL;
}

int uplink_start(struct serve_app *app, struct uplink **out)
{
	struct uplink *u = calloc(1, sizeof *u);
	if (!u)
		return AT_ENOMEM;
	u->app = app;
	http_client_init(&u->client, app->cfg.atelierd, app->cfg.token, &u->bg.stop, NULL);
	snprintf(u->client.user_agent, sizeof u->client.user_agent, "atelier-serve/%s", app->name);
	if (bgthread_start(&u->bg, run, u) < 0) {
		free(u);
		return AT_ENOMEM;
	}
	*out = u;
	return 0;
}

void uplink_notify(struct uplink *u)
{
	if (!u)
		return;
	pthread_mutex_lock(&u->bg.mu);
	u->woken = 1;
	pthread_cond_broadcast(&u->bg.cv);
	pthread_mutex_unlock(&u->bg.mu);
}

void uplink_stop(struct uplink *u)
{
	if (u)
		bgthread_stop(&u->bg);
}

void uplink_free(struct uplink *u)
{
	if (!u)
		return;
	bgthread_join(&u->bg);
	free(u);
}

int uplink_metrics(struct uplink *u, struct at_buf *b)
{
	if (!u)
		return 0;
	pthread_mutex_lock(&u->bg.mu);
	int rc = at_buf_printf(
		b,
		"# HELP atelier_serve_heartbeats_total Heartbeats sent, by outcome.\n"
		"# TYPE atelier_serve_heartbeats_total counter\n"
		"atelier_serve_heartbeats_total{outcome=\"ok\"} %llu\n"
		"atelier_serve_heartbeats_total{outcome=\"failed\"} %llu\n"
		"# HELP atelier_serve_contributions_sent_total Spooled contributions answered by atelierd.\n"
		"# TYPE atelier_serve_contributions_sent_total counter\n"
		"atelier_serve_contributions_sent_total{outcome=\"delivered\"} %llu\n"
		"atelier_serve_contributions_sent_total{outcome=\"rejected\"} %llu\n"
		"# HELP atelier_serve_spool_retries_total Delivery attempts that will be retried.\n"
		"# TYPE atelier_serve_spool_retries_total counter\natelier_serve_spool_retries_total %llu\n",
		(unsigned long long)u->hb_ok, (unsigned long long)u->hb_fail, (unsigned long long)u->delivered,
		(unsigned long long)u->rejected, (unsigned long long)u->retries);
	pthread_mutex_unlock(&u->bg.mu);
	return rc;
}
