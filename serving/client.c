/*
 * client.c — see client.h. One easy handle per call: these calls are rare
 * (a long-poll every 30 s, a heartbeat every few seconds, a contribution now
 * and then), so connection reuse is not worth a shared handle across threads.
 */
#include "client.h"

#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

void client_resp_init(struct client_resp *r, size_t cap)
{
	memset(r, 0, sizeof *r);
	at_buf_init(&r->body, cap);
}

void client_resp_free(struct client_resp *r) { at_buf_free(&r->body); }

struct xfer {
	const struct client *c;
	struct client_resp *r;
	FILE *f;
	CURL *h;
	long long range_from;
	long long written;
	int first;
	int overflow;
};

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	if (x->f) {
		/* A server that ignores Range sends the whole file with 200:
		 * start the file over rather than append a second copy. */
		if (x->first && x->range_from > 0) {
			long status = 0;
			curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
			if (status == 200) {
				fflush(x->f);
				if (ftruncate(fileno(x->f), 0) != 0)
					return 0;
			}
		}
		x->first = 0;
		x->written += (long long)len;
		if (x->r->max_file > 0 && x->written > x->r->max_file) {
			x->overflow = 1;
			return 0;
		}
		return fwrite(p, 1, len, x->f);
	}
	if (at_buf_add(&x->r->body, p, len) < 0) {
		x->overflow = 1;
		return 0;
	}
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	static const char name[] = "x-content-sha256:";
	if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
		const char *v = p + sizeof name - 1;
		size_t vl = len - (sizeof name - 1);
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl == 64) {
			memcpy(x->r->sha256, v, 64);
			x->r->sha256[64] = 0;
		}
	}
	return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct xfer *x = arg;
	return x->c->stop && __atomic_load_n(x->c->stop, __ATOMIC_ACQUIRE) ? 1 : 0;
}

static int perform(const struct client *c, CURL *h, const char *path, long timeout_s, FILE *f, long long range_from,
		   struct curl_slist *hdrs, struct client_resp *r)
{
	struct xfer x = {.c = c, .r = r, .f = f, .h = h, .range_from = range_from, .first = 1};
	char url[2048];
	snprintf(url, sizeof url, "%s%s", c->base, path);
	char auth[600];
	if (c->token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	r->status = 0;
	r->error[0] = 0;
	r->sha256[0] = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(h);
	curl_slist_free_all(hdrs);
	if (cc == CURLE_ABORTED_BY_CALLBACK)
		return AT_ECANCELLED;
	if (cc != CURLE_OK) {
		if (!r->error[0])
			snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(cc));
		if (x.overflow)
			snprintf(r->error, sizeof r->error, "answer larger than expected");
		return AT_EUNAVAILABLE;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	return 0;
}

int client_get(const struct client *c, const char *path, long timeout_s, FILE *f, long long range_from,
	       struct client_resp *r)
{
	CURL *h = curl_easy_init();
	if (!h)
		return AT_ENOMEM;
	char range[64];
	if (range_from > 0) {
		snprintf(range, sizeof range, "%lld-", range_from);
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	}
	int rc = perform(c, h, path, timeout_s, f, range_from, NULL, r);
	curl_easy_cleanup(h);
	return rc;
}

int client_post_json(const struct client *c, const char *path, const char *json, long timeout_s,
		     struct client_resp *r)
{
	CURL *h = curl_easy_init();
	if (!h)
		return AT_ENOMEM;
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	int rc = perform(c, h, path, timeout_s, NULL, 0, hdrs, r);
	curl_easy_cleanup(h);
	return rc;
}

int client_post_mime(const struct client *c, const char *path, curl_mime *(*build)(CURL *, void *), void *arg,
		     long timeout_s, struct client_resp *r)
{
	CURL *h = curl_easy_init();
	if (!h)
		return AT_ENOMEM;
	curl_mime *m = build(h, arg);
	if (!m) {
		curl_easy_cleanup(h);
		return AT_ENOMEM;
	}
	curl_easy_setopt(h, CURLOPT_MIMEPOST, m);
	/* no "Expect: 100-continue" round trip for small bodies */
	struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
	int rc = perform(c, h, path, timeout_s, NULL, 0, hdrs, r);
	curl_easy_cleanup(h);
	curl_mime_free(m);
	return rc;
}

void client_init(struct client *c, const char *base, const char *token, const char *node, const int *stop)
{
	c->base = base;
	c->token = token;
	c->stop = stop;
	snprintf(c->user_agent, sizeof c->user_agent, "atelier-serve/%s", node);
}
