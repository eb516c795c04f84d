/*
 * http_client.c — see http_client.h. One easy handle per call, kept by the
 * response until it is freed (curl_easy_header() reads from it).
 */
#include "http_client.h"

#include <string.h>
#include <unistd.h>

#include "log.h"

#define DEFAULT_TIMEOUT_S 600L
#define DEFAULT_CONNECT_TIMEOUT_S 10L
#define URL_MAX 2048

#define BASE_MAX 512

/* The next entry of a comma-separated list at *p: [*at, *at + *len), blanks
 * and trailing slashes trimmed; *p moves past it. 0 at the end of the list. */
static int next_base(const char **p, const char **at, int *len)
{
	const char *s = *p;
	if (!s || !*s)
		return 0;
	const char *end = strchr(s, ',');
	if (!end)
		end = s + strlen(s);
	*p = *end ? end + 1 : end;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	const char *e = end;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '/'))
		e--;
	*at = s;
	*len = (int)(e - s > BASE_MAX ? BASE_MAX + 1 : e - s);
	return 1;
}

void http_client_init(struct http_client *c, const char *base, const char *token, const int *stop,
		      const char *user_agent)
{
	memset(c, 0, sizeof *c);
	c->base = base;
	const char *p = base, *at;
	int len;
	while (c->nbases < HTTP_CLIENT_MAX_BASES && next_base(&p, &at, &len))
		if (len > 0) {
			c->bases[c->nbases].at = at;
			c->bases[c->nbases].len = len;
			c->nbases++;
		}
	c->token = token;
	c->stop = stop;
	c->connect_timeout_s = DEFAULT_CONNECT_TIMEOUT_S;
	if (user_agent)
		snprintf(c->user_agent, sizeof c->user_agent, "%s", user_agent);
}

int http_client_check_base(const char *base, char *err, size_t errlen)
{
	const char *p = base, *at;
	int len, n = 0;
	if (!base || !*base) {
		snprintf(err, errlen, "no atelierd URL given");
		return AT_EINVAL;
	}
	while (next_base(&p, &at, &len)) {
		n++;
		if (len == 0) {
			snprintf(err, errlen, "URL %d of \"%.200s\" is empty", n, base);
			return AT_EINVAL;
		}
		if (len > BASE_MAX) {
			snprintf(err, errlen, "URL %d is longer than %d bytes", n, BASE_MAX);
			return AT_EINVAL;
		}
		if (!(len > 7 && strncmp(at, "http://", 7) == 0) && !(len > 8 && strncmp(at, "https://", 8) == 0)) {
			snprintf(err, errlen, "\"%.*s\" is not an http:// or https:// URL", len, at);
			return AT_EINVAL;
		}
		if (strcspn(at, " \t\"\\\r\n") < (size_t)len) {
			snprintf(err, errlen, "\"%.*s\" has a blank, a quote or a backslash inside", len, at);
			return AT_EINVAL;
		}
	}
	if (n > HTTP_CLIENT_MAX_BASES) {
		snprintf(err, errlen, "%d URLs; at most %d", n, HTTP_CLIENT_MAX_BASES);
		return AT_EINVAL;
	}
	return 0;
}

void http_client_current(const struct http_client *c, char *out, size_t cap)
{
	if (!cap)
		return;
	out[0] = 0;
	if (c->nbases > 0) {
		int i = __atomic_load_n(&c->cur, __ATOMIC_RELAXED);
		snprintf(out, cap, "%.*s", c->bases[i].len, c->bases[i].at);
	}
}

void http_client_resp_init(struct http_client_resp *r, size_t cap)
{
	memset(r, 0, sizeof *r);
	at_buf_init(&r->body, cap);
}

void http_client_resp_free(struct http_client_resp *r)
{
	at_buf_free(&r->body);
	if (r->h)
		curl_easy_cleanup(r->h);
	r->h = NULL;
}

/* ---- one transfer ---- */

struct xfer {
	const struct http_client *c;
	const struct http_client_req *q;
	struct http_client_resp *r;
	int to_file; /* decided at the first body byte, from the status */
	int started;
	long long file_size; /* bytes in q->file */
	int err;             /* why on_body stopped the transfer */
};

/* Only a 200/206 body belongs in the file; any other answer's body is an
 * error message, kept in r->body for the caller to log (were it appended,
 * the next resume would build on it). Its head is enough for that: past the
 * cap the rest is dropped rather than failing the call with AT_ETOOBIG,
 * which a downloader takes to mean "the artifact is too big". */
static int start_body(struct xfer *x)
{
	x->started = 1;
	if (!x->q->file)
		return 0;
	long status = 0;
	curl_easy_getinfo(x->r->h, CURLINFO_RESPONSE_CODE, &status);
	x->to_file = status == 200 || status == 206;
	x->file_size = x->q->range_from;
	/* A server that ignores Range sends the whole file with 200: start
	 * the file over rather than append a second copy. */
	if (x->to_file && x->q->range_from > 0 && status == 200) {
		if (fflush(x->q->file) != 0 || ftruncate(fileno(x->q->file), 0) != 0)
			return AT_EIO;
		x->file_size = 0;
	}
	return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	if (!x->started && (x->err = start_body(x)) < 0)
		return 0;
	if (!x->to_file) {
		struct at_buf *b = &x->r->body;
		int rc = at_buf_add(b, p, len);
		if (rc == AT_ETOOBIG && x->q->file) {
			if (b->len < b->cap && at_buf_add(b, p, b->cap - b->len) < 0)
				return 0;
			return len;
		}
		x->err = rc;
		return rc < 0 ? 0 : len;
	}
	if (x->q->max_file > 0 && x->file_size + (long long)len > x->q->max_file) {
		x->err = AT_ETOOBIG;
		return 0;
	}
	if (fwrite(p, 1, len, x->q->file) != len) {
		x->err = AT_EIO;
		return 0;
	}
	x->file_size += (long long)len;
	return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	const struct xfer *x = arg;
	return __atomic_load_n(x->c->stop, __ATOMIC_ACQUIRE) ? 1 : 0;
}

static const char *method_of(const struct http_client_req *q)
{
	if (q->method)
		return q->method;
	return q->body || q->form ? "POST" : "GET";
}

static int header(struct curl_slist **list, const char *name, const char *value)
{
	char line[1024];
	/* "Name:" with nothing after it tells libcurl to send no such header */
	if (snprintf(line, sizeof line, "%s:%s%s", name, *value ? " " : "", value) >= (int)sizeof line)
		return AT_EINVAL;
	struct curl_slist *l = curl_slist_append(*list, line);
	if (!l)
		return AT_ENOMEM;
	*list = l;
	return 0;
}

/* Authorization, Content-Type, and no "Expect: 100-continue" (a round trip
 * for nothing: atelierd reads or refuses a body as it comes). Without a
 * content type the empty "Content-Type:" keeps libcurl from claiming a form. */
static int request_headers(const struct http_client *c, const struct http_client_req *q, struct curl_slist **list)
{
	int rc = 0;
	if (c->token) {
		char bearer[600];
		if (snprintf(bearer, sizeof bearer, "Bearer %s", c->token) >= (int)sizeof bearer)
			return AT_EINVAL;
		rc = header(list, "Authorization", bearer);
	}
	if (rc == 0 && !q->form)
		rc = header(list, "Content-Type", q->content_type ? q->content_type : "");
	if (rc == 0)
		rc = header(list, "Expect", "");
	if (rc == 0 && q->header_name && q->header_value)
		rc = header(list, q->header_name, q->header_value);
	return rc;
}

static int fail(struct http_client_resp *r, const char *method, const char *url, int err, const char *why)
{
	snprintf(r->error, sizeof r->error, "%s %s: %s", method, url, why);
	r->status = 0;
	return err;
}

static int outcome(struct http_client_resp *r, const struct xfer *x, CURLcode cc, const char *method, const char *url,
		   const char *errbuf)
{
	char why[128];
	if (x->err == AT_ETOOBIG) {
		if (x->to_file)
			snprintf(why, sizeof why, "answer larger than %lld bytes", x->q->max_file);
		else
			snprintf(why, sizeof why, "answer larger than %zu bytes", r->body.cap);
		return fail(r, method, url, AT_ETOOBIG, why);
	}
	if (x->err < 0)
		return fail(r, method, url, x->err, x->err == AT_EIO ? "cannot write the file" : at_strerror(x->err));
	if (cc == CURLE_OK) {
		curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
		return 0;
	}
	const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(cc);
	if (cc == CURLE_ABORTED_BY_CALLBACK)
		return fail(r, method, url, AT_ECANCELLED, "stopped");
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return fail(r, method, url, AT_ETIMEOUT, msg);
	if (cc == CURLE_OUT_OF_MEMORY)
		return fail(r, method, url, AT_ENOMEM, msg);
	return fail(r, method, url, AT_EUNAVAILABLE, msg);
}

static void set_body(CURL *h, const struct http_client_req *q, const char *method)
{
	/* A POST without a body still says Content-Length: 0 (a form is its
	 * own body: CURLOPT_MIMEPOST). */
	int wants_body = !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
	if (!q->form && (q->body || wants_body)) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? (const char *)q->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(q->body ? q->len : 0));
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (q->range_from > 0) {
		char range[64];
		snprintf(range, sizeof range, "%lld-", q->range_from);
		curl_easy_setopt(h, CURLOPT_RANGE, range); /* libcurl copies it */
	}
}

static void set_transfer(CURL *h, const struct http_client *c, const struct http_client_req *q, struct xfer *x,
			 char *errbuf)
{
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	if (c->stop) {
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	}
	if (c->user_agent[0])
		curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
			 c->connect_timeout_s > 0 ? c->connect_timeout_s : DEFAULT_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, q->timeout_s > 0 ? q->timeout_s : DEFAULT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for name look-ups */
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
}

/* One call to base [at, at + len). *sent: whether any of the request went out. */
static int call_one(const struct http_client *c, const char *at, int len, const struct http_client_req *q,
		    struct http_client_resp *r, int *sent)
{
	const char *method = method_of(q);
	char url[URL_MAX], errbuf[CURL_ERROR_SIZE] = "";
	*sent = 0;
	if (r->h)
		curl_easy_cleanup(r->h);
	at_buf_reset(&r->body);
	r->status = 0;
	r->error[0] = 0;
	r->h = NULL;
	if (snprintf(url, sizeof url, "%.*s%s", len, at, q->path) >= (int)sizeof url)
		return fail(r, method, c->base, AT_EINVAL, "URL too long");
	r->h = curl_easy_init();
	if (!r->h)
		return fail(r, method, url, AT_ENOMEM, "cannot make a libcurl handle");
	struct curl_slist *hdrs = NULL;
	curl_mime *mime = NULL;
	int rc = request_headers(c, q, &hdrs);
	if (rc < 0) {
		curl_slist_free_all(hdrs);
		return fail(r, method, url, rc, "request headers too long");
	}
	if (q->form) {
		mime = q->form(r->h, q->form_arg);
		if (!mime) {
			curl_slist_free_all(hdrs);
			return fail(r, method, url, AT_ENOMEM, "cannot build the form");
		}
		curl_easy_setopt(r->h, CURLOPT_MIMEPOST, mime);
	}
	struct xfer x = {.c = c, .q = q, .r = r};
	curl_easy_setopt(r->h, CURLOPT_URL, url);
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, hdrs);
	set_body(r->h, q, method);
	set_transfer(r->h, c, q, &x, errbuf);
	if (strcmp(method, "GET") == 0) {
		/* atelierd answers an artifact GET with a 302 to a presigned URL when
		 * its store is s3:// (orchestrator/artifacts_api.c). libcurl keeps the
		 * Range and drops the Authorization header when the host or port
		 * changes, so the token never reaches the object store. */
		curl_easy_setopt(r->h, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(r->h, CURLOPT_MAXREDIRS, 3L);
		curl_easy_setopt(r->h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	}
	CURLcode cc = curl_easy_perform(r->h);
	long req_bytes = 0;
	*sent = curl_easy_getinfo(r->h, CURLINFO_REQUEST_SIZE, &req_bytes) != CURLE_OK || req_bytes > 0;
	/* The handle stays for header look-ups: unhook what dies here. */
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(r->h, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(r->h, CURLOPT_XFERINFODATA, NULL);
	if (mime)
		curl_easy_setopt(r->h, CURLOPT_MIMEPOST, NULL);
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	return outcome(r, &x, cc, method, url, errbuf);
}

/* The base could not serve the call: unreachable, or a gateway/unavailable answer. */
static int base_failed(int rc, const struct http_client_resp *r)
{
	if (rc == AT_EUNAVAILABLE || rc == AT_ETIMEOUT)
		return 1;
	return rc == 0 && (r->status == 502 || r->status == 503 || r->status == 504);
}

static void set_cur(struct http_client *c, int cur)
{
	__atomic_store_n(&c->cur, cur, __ATOMIC_RELAXED);
	if (c->share_cur)
		__atomic_store_n(c->share_cur, cur, __ATOMIC_RELAXED);
}

int http_client_call(struct http_client *c, const struct http_client_req *q, struct http_client_resp *r)
{
	if (c->nbases == 0) {
		int sent;
		return call_one(c, c->base ? c->base : "", c->base ? (int)strlen(c->base) : 0, q, r, &sent);
	}
	const char *method = method_of(q);
	int idempotent = !q->file && (!strcmp(method, "GET") || !strcmp(method, "HEAD"));
	int first = __atomic_load_n(&c->cur, __ATOMIC_RELAXED), rc = 0;
	for (int k = 0; k < c->nbases; k++) {
		int i = (first + k) % c->nbases, sent = 0;
		rc = call_one(c, c->bases[i].at, c->bases[i].len, q, r, &sent);
		if (!base_failed(rc, r) || c->nbases == 1)
			return rc;
		/* this base failed: the next one is current from now on */
		set_cur(c, (i + 1) % c->nbases);
		__atomic_add_fetch(&c->failovers, 1, __ATOMIC_RELAXED);
		if (k + 1 == c->nbases) {
			/* all failed: the next call starts one further on (round robin) */
			set_cur(c, (first + 1) % c->nbases);
			break;
		}
		/* ... and gets this call too, unless the failed one may have acted on it */
		int unanswered = rc != 0 && sent && !idempotent;
		if (unanswered)
			break;
		if (rc == 0)
			log_info("http_client: %.*s answered %ld; trying %.*s", c->bases[i].len, c->bases[i].at,
				 r->status, c->bases[(i + 1) % c->nbases].len, c->bases[(i + 1) % c->nbases].at);
		else
			log_info("http_client: %s; trying %.*s", r->error, c->bases[(i + 1) % c->nbases].len,
				 c->bases[(i + 1) % c->nbases].at);
	}
	return rc;
}

/* ---- response headers ---- */

const char *http_client_header(const struct http_client_resp *r, const char *name)
{
	struct curl_header *hd = NULL;
	if (!r->h || curl_easy_header(r->h, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return NULL;
	/* the last of a repeated header, as the old callbacks kept it */
	if (hd->amount > 1 && curl_easy_header(r->h, name, hd->amount - 1, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return NULL;
	return hd->value;
}
