/*
 * limit.c — see limit.h. The client is the TCP peer; with --trust-proxy the
 * last X-Forwarded-For entry instead (the one our proxy appended: entries to
 * its left are whatever the client chose to send).
 */
#include "limit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "ratelimit.h"
#include "serve.h"

static const char *const names[LIMIT_N] = {"stylize", "contribute", "publish"};

int limit_init(struct serve_app *app)
{
	const double rate[LIMIT_N] = {app->cfg.rate_stylize, app->cfg.rate_contribute, app->cfg.rate_publish};
	const double burst[LIMIT_N] = {app->cfg.burst_stylize, app->cfg.burst_contribute, app->cfg.burst_publish};
	for (int i = 0; i < LIMIT_N; i++) {
		if (rate[i] <= 0)
			continue;
		int rc = ratelimit_new(rate[i], burst[i], (size_t)app->cfg.ratelimit_slots, &app->limits[i]);
		if (rc < 0) {
			log_error("rate limit for /api/%s: %s", names[i], at_strerror(rc));
			return rc;
		}
	}
	return 0;
}

void limit_free(struct serve_app *app)
{
	for (int i = 0; i < LIMIT_N; i++) {
		ratelimit_free(app->limits[i]);
		app->limits[i] = NULL;
	}
}

/* The last address of an X-Forwarded-For value, into a key. */
static int forwarded_key(const char *v, size_t len, uint8_t key[16])
{
	size_t start = len;
	while (start > 0 && v[start - 1] != ',')
		start--;
	while (start < len && (v[start] == ' ' || v[start] == '\t'))
		start++;
	while (len > start && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	char ip[64];
	if (len == start || len - start >= sizeof ip)
		return AT_EINVAL;
	memcpy(ip, v + start, len - start);
	ip[len - start] = 0;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (uv_inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 0)
		ss.ss_family = AF_INET;
	else if (uv_inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 0)
		ss.ss_family = AF_INET6;
	else
		return AT_EINVAL;
	return ratelimit_key((struct sockaddr *)&ss, key);
}

static int client_key(struct serve_app *app, http_req_t *req, uint8_t key[16])
{
	if (app->cfg.trust_proxy) {
		size_t len = 0;
		const char *xff = http_req_header(req, "x-forwarded-for", &len);
		if (xff && forwarded_key(xff, len, key) == 0)
			return 0;
	}
	struct sockaddr_storage ss;
	int rc = http_req_peer(req, &ss);
	return rc < 0 ? rc : ratelimit_key((struct sockaddr *)&ss, key);
}

int limit_admit(struct serve_app *app, http_req_t *req, enum limit_endpoint ep)
{
	struct ratelimit *rl = app->limits[ep];
	uint8_t key[16];
	if (!rl || client_key(app, req, key) < 0)
		return 0; /* no limit, or no address to key by (a Unix socket): not ours to refuse */
	double wait = 0;
	int rc = ratelimit_take(rl, key, uv_hrtime(), &wait);
	if (rc == 0)
		return 0;
	char ra[24];
	double secs = ceil(wait);
	snprintf(ra, sizeof ra, "%.0f", secs < 1 ? 1 : secs);
	http_req_add_header(req, "Retry-After", ra);
	char msg[96];
	snprintf(msg, sizeof msg, "too many requests to /api/%s from this address: retry in %s s", names[ep], ra);
	http_reply_err(req, AT_ERATELIMITED, msg, json_pack("{ss,sf}", "endpoint", names[ep], "retry_after", wait));
	return AT_ERATELIMITED;
}

int limit_metrics(struct serve_app *app, struct at_buf *b)
{
	int rc = at_buf_addstr(b, "# HELP atelier_serve_ratelimited_total Requests refused 429 by the per-client "
				  "rate limit, by endpoint.\n# TYPE atelier_serve_ratelimited_total counter\n");
	for (int i = 0; rc == 0 && i < LIMIT_N; i++) {
		struct ratelimit_stats st = {0};
		if (app->limits[i])
			ratelimit_stats(app->limits[i], &st);
		rc = at_buf_printf(b, "atelier_serve_ratelimited_total{endpoint=\"%s\"} %llu\n", names[i],
				   (unsigned long long)st.limited);
	}
	if (rc == 0)
		rc = at_buf_addstr(b,
				   "# HELP atelier_serve_ratelimit_clients Client addresses in the limiter's table.\n"
				   "# TYPE atelier_serve_ratelimit_clients gauge\n");
	for (int i = 0; rc == 0 && i < LIMIT_N; i++) {
		struct ratelimit_stats st = {0};
		if (app->limits[i])
			ratelimit_stats(app->limits[i], &st);
		rc = at_buf_printf(b, "atelier_serve_ratelimit_clients{endpoint=\"%s\"} %zu\n", names[i], st.used);
	}
	return rc;
}
