/*
 * http.c — the HTTP server of every Atelier binary: h2o (HTTP/1.1, cleartext HTTP/2) on the
 * caller's libuv loop, dispatching through a route table. See http.h.
 *
 * Ownership: h2o owns h2o_req_t and frees it (with its memory pool) when the
 * response is done or the client goes away. Our http_req_t is malloc'd and
 * linked to the h2o request through a small object in req->pool whose dispose
 * callback detaches us; so a handler that replies after the client left finds
 * req->h2o == NULL and the reply only frees the http_req_t. Exactly one reply
 * call frees an http_req_t.
 *
 * Body caps: h2o 2.2 buffers the whole body before calling us, and refuses
 * bodies over globalconf.max_request_entity_size with its own plain-text 413.
 * We set that hard limit to twice our configured cap, so bodies between the
 * cap and the hard limit get our JSON 413 and only absurd ones get h2o's.
 */
#include "http.h"

#include <dlfcn.h>
#include <errno.h>
#include <h2o.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define HTTP_MAX_SEGS 12
#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_QUERY 16
#define HTTP_STR_(x) #x
#define HTTP_STR(x) HTTP_STR_(x) /* a cap spelled in a message */
#define HTTP_MAX_EXTRA_HEADERS 8
#define HTTP_MAX_STATUS_SLOTS 24

struct route_seg {
	char *lit;    /* literal segment, or NULL for a {param} */
	char *name;   /* param name */
	char *suffix; /* literal after the param in the same segment ("{id}.png"), or NULL */
	int rest;     /* {name*}: matches the rest of the path */
};

struct compiled_route {
	const struct http_route *r;
	struct route_seg segs[HTTP_MAX_SEGS];
	int nsegs;
	/* counters for /metrics, by status */
	int statuses[HTTP_MAX_STATUS_SLOTS];
	uint64_t counts[HTTP_MAX_STATUS_SLOTS];
	double seconds_sum;
	uint64_t seconds_count;
};

/* An accepted connection, tracked so shutdown can end idle keep-alive ones. */
struct http_conn {
	uv_tcp_t tcp; /* first: h2o's close callback gets this pointer */
	struct http_conn *prev, *next;
	http_server_t *srv;
	h2o_socket_t *sock;             /* h2o's socket over tcp; sock->data is h2o's connection */
	const h2o_conn_callbacks_t *h1; /* HTTP/1 connections' callbacks: tells an upgrade to HTTP/2 */
	/* progress of the request being read (idle_tick) */
	size_t seen;       /* bytes h2o held at the last change; SIZE_MAX: not reading */
	uint64_t since_ns; /* when seen last changed */
	uint64_t begun_ns; /* when the request's first byte was seen; 0: none */
	int timed_out;
};

struct http_server {
	uv_loop_t *loop;
	struct http_conn conns; /* list head */
	h2o_globalconf_t config;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	uv_tcp_t listener;
	int port;
	struct http_config cfg;
	struct compiled_route *routes;
	size_t nroutes;
	struct compiled_route unmatched; /* 404/405 and pre-routing errors */
	uint64_t next_id;
	uint32_t id_prefix;
	size_t pending;
	uint64_t errors[AT_ERR_COUNT]; /* error replies, by row of the error table */
	int closing;
	uv_timer_t idle_timer;
	uint64_t idle_ns, ceiling_ns;
	uv_timer_t close_timer;
	int close_waits;
	void (*on_closed)(void *);
	void *closed_arg;
};

struct req_link {
	http_req_t *req;
};

struct http_req {
	http_server_t *srv;
	h2o_req_t *h2o; /* NULL once h2o disposed the request */
	struct req_link *link;
	struct http_conn *conn; /* its connection, or NULL; valid while h2o != NULL */
	struct compiled_route *route;
	char path[2048];
	const char *pnames[HTTP_MAX_PARAMS];
	char *pvalues[HTTP_MAX_PARAMS];
	int nparams;
	char *qnames[HTTP_MAX_QUERY];
	char *qvalues[HTTP_MAX_QUERY];
	int nquery;
	int query_parsed;
	unsigned role;
	int64_t token_id;
	char token_node[65];
	char principal[64]; /* the token's name, set by the auth check; "" when none */
	char id[40];
	void *data;
	uint64_t start_ns;
	char *xh_names[HTTP_MAX_EXTRA_HEADERS];
	char *xh_values[HTTP_MAX_EXTRA_HEADERS];
	int nxh;
	int xh_lost; /* an extra header did not fit: the reply becomes a 500 */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- roles ---- */

static const struct {
	unsigned bit;
	const char *name;
} role_names[] = {{ROLE_VIEWER, "viewer"}, {ROLE_NODE, "node"}, {ROLE_OPERATOR, "operator"}};

const char *http_role_name(unsigned role)
{
	for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++)
		if (role_names[i].bit == role)
			return role_names[i].name;
	return role == ROLE_PUBLIC ? "public" : "unknown";
}

unsigned http_role_parse(const char *name)
{
	for (size_t i = 0; i < sizeof role_names / sizeof role_names[0]; i++)
		if (strcmp(role_names[i].name, name) == 0)
			return role_names[i].bit;
	return 0;
}

/* ---- routes ---- */

static int compile_route(struct compiled_route *cr, const struct http_route *r)
{
	memset(cr, 0, sizeof *cr);
	cr->r = r;
	const char *p = r->pattern;
	if (*p != '/')
		return AT_EINVAL;
	while (*p == '/') {
		p++;
		if (!*p)
			break;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (cr->nsegs == HTTP_MAX_SEGS)
			return AT_EINVAL;
		struct route_seg *s = &cr->segs[cr->nsegs++];
		const char *close = n >= 2 && p[0] == '{' ? memchr(p, '}', n) : NULL;
		if (close) {
			size_t nn = (size_t)(close - p) - 1;
			if (nn > 0 && p[nn] == '*') {
				s->rest = 1;
				nn--;
			}
			s->name = strndup(p + 1, nn);
			size_t suf = n - (size_t)(close - p) - 1;
			if (suf)
				s->suffix = strndup(close + 1, suf);
			if (!s->name || (suf && !s->suffix))
				return AT_ENOMEM;
		} else {
			s->lit = strndup(p, n);
			if (!s->lit)
				return AT_ENOMEM;
		}
		p += n;
	}
	/* A schema typo would otherwise surface only as a broken OpenAPI document. */
	const char *texts[] = {r->params, r->body, r->reply, r->replies};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		if (!texts[i])
			continue;
		json_error_t e;
		json_t *j = json_loads(texts[i], 0, &e);
		int ok = json_is_object(j);
		json_decref(j);
		if (!ok) {
			if (j)
				log_error("http: %s %s: OpenAPI text is not a JSON object: %s", r->method, r->pattern,
					  texts[i]);
			else
				log_error("http: %s %s: OpenAPI text: %s at column %d: %s", r->method, r->pattern,
					  e.text, e.column, texts[i]);
			return AT_EINVAL;
		}
	}
	return 0;
}

/* Routes are tried in table order, so "/v1/x/{id}.png" must come before "/v1/x/{id}". */
static int seg_match(const struct route_seg *s, const char *seg, size_t n, char **value)
{
	if (s->lit)
		return strlen(s->lit) == n && memcmp(s->lit, seg, n) == 0;
	if (s->suffix) {
		size_t suf = strlen(s->suffix);
		if (n <= suf || memcmp(seg + n - suf, s->suffix, suf) != 0)
			return 0;
		n -= suf;
	}
	if (n == 0)
		return 0;
	*value = strndup(seg, n);
	return *value != NULL;
}

static void req_clear_params(http_req_t *req)
{
	for (int i = 0; i < req->nparams; i++)
		free(req->pvalues[i]);
	req->nparams = 0;
}

static int route_match(http_req_t *req, struct compiled_route *cr)
{
	const char *p = req->path;
	int si = 0;
	req_clear_params(req);
	while (*p == '/') {
		p++;
		if (!*p && si == cr->nsegs)
			break;
		if (si >= cr->nsegs)
			goto no;
		const struct route_seg *s = &cr->segs[si];
		if (s->rest) {
			if (req->nparams < HTTP_MAX_PARAMS) {
				req->pnames[req->nparams] = s->name;
				req->pvalues[req->nparams] = strdup(p);
				req->nparams++;
			}
			return 1;
		}
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char *val = NULL;
		if (!seg_match(s, p, n, &val))
			goto no;
		if (val) {
			if (req->nparams == HTTP_MAX_PARAMS) {
				free(val);
				goto no;
			}
			req->pnames[req->nparams] = s->name;
			req->pvalues[req->nparams++] = val;
		}
		si++;
		p += n;
	}
	if (si == cr->nsegs && *p == 0)
		return 1;
no:
	req_clear_params(req);
	return 0;
}

/* ---- request lifetime ---- */

static void link_dispose(void *p)
{
	struct req_link *l = p;
	if (l->req)
		l->req->h2o = NULL;
}

static void req_free(http_req_t *req)
{
	if (req->link)
		req->link->req = NULL;
	req_clear_params(req);
	for (int i = 0; i < req->nquery; i++) {
		free(req->qnames[i]);
		free(req->qvalues[i]);
	}
	for (int i = 0; i < req->nxh; i++) {
		free(req->xh_names[i]);
		free(req->xh_values[i]);
	}
	req->srv->pending--;
	free(req);
}

static void count_status(struct compiled_route *cr, int status, double secs)
{
	cr->seconds_sum += secs;
	cr->seconds_count++;
	for (int i = 0; i < HTTP_MAX_STATUS_SLOTS; i++) {
		if (cr->statuses[i] == status) {
			cr->counts[i]++;
			return;
		}
		if (cr->statuses[i] == 0) {
			cr->statuses[i] = status;
			cr->counts[i] = 1;
			return;
		}
	}
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 414: return "URI Too Long";
	case 416: return "Range Not Satisfiable";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/* Sets status and common headers; returns 0 if the client is still there. */
static int reply_begin(http_req_t *req, int status, const char *content_type)
{
	count_status(req->route ? req->route : &req->srv->unmatched, status, (double)(now_ns() - req->start_ns) / 1e9);
	h2o_req_t *r = req->h2o;
	if (!r)
		return -1;
	r->res.status = status;
	r->res.reason = reason_phrase(status);
	if (content_type)
		h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
			       h2o_strdup(&r->pool, content_type, SIZE_MAX).base, strlen(content_type));
	h2o_add_header_by_str(&r->pool, &r->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
			      h2o_strdup(&r->pool, req->id, SIZE_MAX).base, strlen(req->id));
	for (int i = 0; i < req->nxh; i++) {
		/* h2o keeps the pointers: both name and value must live in the
		 * request pool. HTTP/2 requires lower-case names (RFC 9113 8.2.1;
		 * h2o 2.2 sends them as given, and clients fail the stream with
		 * PROTOCOL_ERROR); HTTP/1.1 keeps the handler's spelling. */
		size_t nl = strlen(req->xh_names[i]);
		h2o_iovec_t name = h2o_strdup(&r->pool, req->xh_names[i], nl);
		if (r->version >= 0x200)
			h2o_strtolower(name.base, nl);
		h2o_add_header_by_str(&r->pool, &r->res.headers, name.base, nl, 0, NULL,
				      h2o_strdup(&r->pool, req->xh_values[i], SIZE_MAX).base,
				      strlen(req->xh_values[i]));
	}
	return 0;
}

static void free_slot_dispose(void *p) { free(*(void **)p); }
static int reply_header_lost(http_req_t *req);

void http_reply_owned(http_req_t *req, int status, const char *content_type, void *data, size_t len)
{
	if (reply_header_lost(req)) {
		free(data);
		return;
	}
	if (reply_begin(req, status, content_type) < 0) {
		free(data);
		req_free(req);
		return;
	}
	h2o_req_t *r = req->h2o;
	/* h2o may write after we return: the buffer lives as long as the request pool. */
	void **slot = h2o_mem_alloc_shared(&r->pool, sizeof *slot, free_slot_dispose);
	*slot = data;
	static h2o_generator_t generator = {NULL, NULL};
	r->res.content_length = len;
	req_free(req);
	h2o_start_response(r, &generator);
	h2o_iovec_t buf = h2o_iovec_init(data, len);
	if (h2o_memis(r->method.base, r->method.len, H2O_STRLIT("HEAD")))
		h2o_send(r, NULL, 0, H2O_SEND_STATE_FINAL);
	else
		h2o_send(r, &buf, 1, H2O_SEND_STATE_FINAL);
}

void http_reply_bytes(http_req_t *req, int status, const char *content_type, const void *data, size_t len)
{
	void *copy = malloc(len ? len : 1);
	if (!copy) {
		http_reply_empty(req, 503);
		return;
	}
	memcpy(copy, data, len);
	http_reply_owned(req, status, content_type, copy, len);
}

void http_reply_buf(http_req_t *req, int rc, struct at_buf *b, const char *content_type)
{
	if (rc < 0) {
		at_buf_free(b);
		http_reply_err(req, rc, NULL, NULL);
		return;
	}
	size_t len;
	char *s = at_buf_steal(b, &len);
	if (!s)
		http_reply_bytes(req, 200, content_type, "", 0);
	else
		http_reply_owned(req, 200, content_type, s, len);
}

void http_reply_empty(http_req_t *req, int status)
{
	if (reply_header_lost(req))
		return;
	if (reply_begin(req, status, NULL) < 0) {
		req_free(req);
		return;
	}
	h2o_req_t *r = req->h2o;
	static h2o_generator_t generator = {NULL, NULL};
	r->res.content_length = 0;
	req_free(req);
	h2o_start_response(r, &generator);
	h2o_send(r, NULL, 0, H2O_SEND_STATE_FINAL);
}

void http_reply_json(http_req_t *req, int status, json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : strdup("null");
	json_decref(body);
	if (!s) {
		http_reply_empty(req, 500);
		return;
	}
	size_t n = strlen(s);
	/* a trailing newline makes curl output readable */
	char *t = realloc(s, n + 2);
	if (t) {
		s = t;
		s[n++] = '\n';
		s[n] = 0;
	}
	http_reply_owned(req, status, "application/json", s, n);
}

void http_reply_err(http_req_t *req, int err, const char *msg, json_t *detail)
{
	int i = at_err_index(err);
	if (i < 0) {
		/* not a code of the table: a bug in the caller, answered as one */
		log_error("http: %s %s: reply with unknown error %d [%s]", http_req_method(req), req->path, err,
			  req->id);
		err = AT_EINTERNAL;
		i = at_err_index(err);
	}
	int status = at_err_http_status(err);
	const char *message = msg ? msg : at_strerror(err);
	req->srv->errors[i]++;
	json_t *o = json_object();
	json_object_set_new(o, "error", json_string(message));
	json_object_set_new(o, "code", json_string(at_err_name(err)));
	if (detail)
		json_object_set_new(o, "detail", detail);
	json_object_set_new(o, "request_id", json_string(req->id));
	if (status >= 500)
		log_warn("http: %s %s -> %d %s %s [%s]", http_req_method(req), req->path, status, at_err_name(err),
			 message, req->id);
	else
		log_debug("http: %s %s -> %d %s %s [%s]", http_req_method(req), req->path, status, at_err_name(err),
			  message, req->id);
	http_reply_json(req, status, o);
}

int http_req_add_header(http_req_t *req, const char *name, const char *value)
{
	int rc = AT_ERANGE;
	if (req->nxh < HTTP_MAX_EXTRA_HEADERS) {
		req->xh_names[req->nxh] = strdup(name);
		req->xh_values[req->nxh] = strdup(value);
		if (req->xh_names[req->nxh] && req->xh_values[req->nxh]) {
			req->nxh++;
			return 0;
		}
		free(req->xh_names[req->nxh]);
		free(req->xh_values[req->nxh]);
		rc = AT_ENOMEM;
	}
	log_error("http: %s %s: response header %s dropped: %s [%s]", http_req_method(req), req->path, name,
		  at_strerror(rc), req->id);
	req->xh_lost = 1;
	return rc;
}

/* A reply without a header its handler asked for (a Content-Range, a
 * model's sha256) must not pass for a good one: it becomes a 500, without
 * the other extra headers. Returns 1 when it replied. */
static int reply_header_lost(http_req_t *req)
{
	if (!req->xh_lost)
		return 0;
	req->xh_lost = 0;
	for (; req->nxh > 0; req->nxh--) {
		free(req->xh_names[req->nxh - 1]);
		free(req->xh_values[req->nxh - 1]);
	}
	http_reply_err(req, AT_EINTERNAL, "a response header did not fit", NULL);
	return 1;
}

/* ---- streams ---- */

struct http_stream {
	h2o_generator_t gen; /* first: h2o hands us this pointer */
	h2o_req_t *h2o;      /* NULL once h2o disposed the request */
	struct at_buf pending;
	struct at_buf sending;
	int inflight;
	int ended;     /* the application called http_stream_end */
	int final_out; /* the final (empty) chunk was handed to h2o */
	int refs;      /* one for the application, one for h2o's request pool */
	void (*drain_cb)(void *);
	void *drain_arg;
};

static void stream_unref(struct http_stream *s)
{
	if (--s->refs > 0)
		return;
	at_buf_free(&s->pending);
	at_buf_free(&s->sending);
	free(s);
}

static void stream_pump(struct http_stream *s)
{
	if (!s->h2o || s->inflight || s->final_out)
		return;
	if (s->pending.len) {
		struct at_buf t = s->sending;
		s->sending = s->pending;
		s->pending = t;
		at_buf_reset(&s->pending);
		h2o_iovec_t buf = h2o_iovec_init(s->sending.data, s->sending.len);
		s->inflight = 1;
		h2o_send(s->h2o, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
	} else if (s->ended) {
		s->final_out = 1;
		s->inflight = 1;
		h2o_send(s->h2o, NULL, 0, H2O_SEND_STATE_FINAL);
	}
}

static void stream_proceed(h2o_generator_t *g, h2o_req_t *r)
{
	struct http_stream *s = (struct http_stream *)g;
	s->inflight = 0;
	at_buf_reset(&s->sending);
	stream_pump(s);
	if (!s->inflight && !s->ended && s->drain_cb)
		s->drain_cb(s->drain_arg);
}

size_t http_stream_buffered(const http_stream_t *s) { return s->pending.len + s->sending.len; }

void http_stream_on_drain(http_stream_t *s, void (*cb)(void *arg), void *arg)
{
	s->drain_cb = cb;
	s->drain_arg = arg;
}

static void stream_stop(h2o_generator_t *g, h2o_req_t *r)
{
	struct http_stream *s = (struct http_stream *)g;
	s->h2o = NULL;
}

static void stream_dispose(void *p)
{
	struct http_stream *s = *(struct http_stream **)p;
	s->h2o = NULL;
	stream_unref(s);
}

static http_stream_t *stream_start(http_req_t *req, int status, const char *content_type, uint64_t length);

http_stream_t *http_stream_start(http_req_t *req, int status, const char *content_type)
{
	return stream_start(req, status, content_type, UINT64_MAX);
}

http_stream_t *http_stream_start_sized(http_req_t *req, int status, const char *content_type, uint64_t length)
{
	return stream_start(req, status, content_type, length);
}

static http_stream_t *stream_start(http_req_t *req, int status, const char *content_type, uint64_t length)
{
	if (reply_header_lost(req))
		return NULL;
	struct http_stream *s = calloc(1, sizeof *s);
	if (!s || reply_begin(req, status, content_type) < 0) {
		free(s);
		req_free(req);
		return NULL;
	}
	h2o_req_t *r = req->h2o;
	s->gen.proceed = stream_proceed;
	s->gen.stop = stream_stop;
	s->h2o = r;
	s->refs = 2;
	at_buf_init(&s->pending, (size_t)4 << 20);
	at_buf_init(&s->sending, (size_t)4 << 20);
	struct http_stream **slot = h2o_mem_alloc_shared(&r->pool, sizeof *slot, stream_dispose);
	*slot = s;
	if (length == UINT64_MAX)
		h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
	else
		r->res.content_length = (size_t)length;
	req_free(req);
	h2o_start_response(r, &s->gen);
	return s;
}

int http_stream_write(http_stream_t *s, const void *data, size_t len)
{
	if (!s->h2o || s->ended)
		return AT_ECANCELLED;
	int rc = at_buf_add(&s->pending, data, len);
	if (rc < 0)
		return rc;
	stream_pump(s);
	return 0;
}

int http_stream_alive(const http_stream_t *s) { return s && s->h2o != NULL; }

void http_stream_end(http_stream_t *s)
{
	if (!s)
		return;
	s->ended = 1;
	stream_pump(s);
	stream_unref(s);
}

/* ---- accessors ---- */

void *http_req_app(const http_req_t *req) { return req->srv->cfg.app; }
const char *http_req_path(const http_req_t *req) { return req->path; }
unsigned http_req_role(const http_req_t *req) { return req->role; }

int http_req_peer(const http_req_t *req, struct sockaddr_storage *out)
{
	/* h2o's connection knows its peer for HTTP/1 and HTTP/2 alike */
	if (!req->h2o || !req->h2o->conn || !req->h2o->conn->callbacks->get_peername)
		return AT_EUNAVAILABLE;
	memset(out, 0, sizeof *out);
	if (req->h2o->conn->callbacks->get_peername(req->h2o->conn, (struct sockaddr *)out) == 0)
		return AT_EUNAVAILABLE;
	return 0;
}
int64_t http_req_token_id(const http_req_t *req) { return req->token_id; }
const char *http_req_token_node(const http_req_t *req) { return req->token_node; }

void http_req_set_token(http_req_t *req, int64_t token_id, const char *node)
{
	req->token_id = token_id;
	snprintf(req->token_node, sizeof req->token_node, "%s", node ? node : "");
}
void http_req_set_principal(http_req_t *req, const char *name)
{
	snprintf(req->principal, sizeof req->principal, "%s", name ? name : "");
}
const char *http_req_principal(const http_req_t *req) { return req->principal; }
const char *http_req_id(const http_req_t *req) { return req->id; }
int http_req_alive(const http_req_t *req) { return req->h2o != NULL; }

/* h2o (HTTP/1) stops reading a connection while its request is handled, so
 * a client that closes meanwhile goes unnoticed until the reply is written.
 * A peek at the socket tells: EOF or an error means the client closed or
 * reset it. Bytes waiting (a pipelined request) hide an EOF behind them; the
 * request then counts as wanted. The connection outlives the h2o request
 * (h2o disposes the request before it closes the socket), so req->conn is
 * safe to use while req->h2o is set. */
int http_req_gone(const http_req_t *req)
{
	if (!req->h2o)
		return 1;
	uv_os_fd_t fd;
	if (!req->conn || uv_fileno((uv_handle_t *)&req->conn->tcp, &fd) != 0)
		return 0;
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return 1;
	return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}
void http_req_set_data(http_req_t *req, void *data) { req->data = data; }
void *http_req_data(const http_req_t *req) { return req->data; }

const char *http_req_method(const http_req_t *req)
{
	static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"};
	if (!req->h2o)
		return "?";
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (h2o_memis(req->h2o->method.base, req->h2o->method.len, methods[i], strlen(methods[i])))
			return methods[i];
	return "OTHER";
}

const char *http_req_param(const http_req_t *req, const char *name)
{
	for (int i = 0; i < req->nparams; i++)
		if (strcmp(req->pnames[i], name) == 0)
			return req->pvalues[i];
	return NULL;
}

int http_parse_id(const char *s, int64_t *out)
{
	/* Strict on purpose: strtoll would take "+5", " 5" and clamp
	 * "99999999999999999999" to INT64_MAX, so one resource would answer to
	 * many spellings and an overflow would reach the database. */
	if (!s || !*s || strlen(s) > 19)
		return AT_EINVAL;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return AT_EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	/* 19 digits cannot wrap a uint64_t; the cap is INT64_MAX */
	if (v == 0 || v > (uint64_t)INT64_MAX)
		return AT_EINVAL;
	*out = (int64_t)v;
	return 0;
}

int http_req_param_id(http_req_t *req, const char *name, int64_t *out)
{
	const char *v = http_req_param(req, name);
	if (http_parse_id(v, out) == 0)
		return 0;
	http_reply_err(req, AT_EINVAL, "path parameter must be a positive integer (digits only, up to 2^63-1)",
		       json_pack("{ss,ss}", "param", name, "value", v ? v : ""));
	return AT_EINVAL;
}

const char *http_req_header(const http_req_t *req, const char *name, size_t *len)
{
	if (!req->h2o)
		return NULL;
	ssize_t i = h2o_find_header_by_str(&req->h2o->headers, name, strlen(name), -1);
	if (i < 0)
		return NULL;
	h2o_header_t *h = &req->h2o->headers.entries[i];
	*len = h->value.len;
	return h->value.base;
}

const uint8_t *http_req_body(const http_req_t *req, size_t *len)
{
	if (!req->h2o || !req->h2o->entity.base) {
		*len = 0;
		return (const uint8_t *)"";
	}
	*len = req->h2o->entity.len;
	return (const uint8_t *)req->h2o->entity.base;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static char *url_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
			   hexval((unsigned char)s[i + 2]) >= 0) {
			out[o++] = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = 0;
	return out;
}

int http_query_parse(const char *q, size_t len, char **names, char **values, int max)
{
	const char *end = q + len;
	int n = 0, rc = 0;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(stop - q));
		const char *kend = eq ? eq : stop;
		if (kend > q) {
			if (n == max) {
				rc = AT_ERANGE;
				break;
			}
			names[n] = url_decode(q, (size_t)(kend - q));
			values[n] = eq ? url_decode(eq + 1, (size_t)(stop - eq - 1)) : strdup("");
			n++;
			if (!names[n - 1] || !values[n - 1]) {
				rc = AT_ENOMEM;
				break;
			}
		}
		q = stop + 1;
	}
	if (rc < 0) {
		/* a pair left out would answer the request as if it was never sent */
		for (int i = 0; i < n; i++) {
			free(names[i]);
			free(values[i]);
		}
		return rc;
	}
	return n;
}

static int parse_query(http_req_t *req)
{
	req->query_parsed = 1;
	h2o_req_t *r = req->h2o;
	if (!r || r->query_at == SIZE_MAX)
		return 0;
	const char *q = r->path.base + r->query_at + 1;
	int n = http_query_parse(q, (size_t)(r->path.base + r->path.len - q), req->qnames, req->qvalues,
				 HTTP_MAX_QUERY);
	req->nquery = n < 0 ? 0 : n;
	return n < 0 ? n : 0;
}

const char *http_req_query(http_req_t *req, const char *name)
{
	if (!req->query_parsed && parse_query(req) < 0)
		return NULL; /* only before dispatch, which refuses such a request */
	for (int i = 0; i < req->nquery; i++)
		if (strcmp(req->qnames[i], name) == 0)
			return req->qvalues[i];
	return NULL;
}

json_t *http_req_json_body(http_req_t *req)
{
	size_t len;
	const uint8_t *body = http_req_body(req, &len);
	json_error_t err;
	json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &err);
	if (!j || !json_is_object(j)) {
		json_t *d = json_object();
		if (!j) {
			json_object_set_new(d, "line", json_integer(err.line));
			json_object_set_new(d, "column", json_integer(err.column));
			json_object_set_new(d, "reason", json_string(err.text));
		}
		json_decref(j);
		http_reply_err(req, j ? AT_EINVAL : AT_EPARSE,
			       j ? "request body must be a JSON object" : "invalid JSON body", d);
		return NULL;
	}
	return j;
}

/* ---- dispatch ---- */

static void dispatch(http_req_t *req)
{
	const struct http_route *r = req->route->r;
	size_t len;
	http_req_body(req, &len);
	if (len > req->srv->cfg.max_body) {
		json_t *d = json_pack("{sI,sI}", "size", (json_int_t)len, "limit", (json_int_t)req->srv->cfg.max_body);
		http_reply_err(req, AT_ETOOBIG, "request body too large", d);
		return;
	}
	/* Parsed before the handler so that a query past the cap is the client's
	 * 400, never parameters a handler silently does not see. */
	int rc = parse_query(req);
	if (rc < 0) {
		const char *msg = rc == AT_ERANGE ? "too many query parameters (at most " HTTP_STR(HTTP_MAX_QUERY) ")"
						  : "cannot read the query";
		http_reply_err(req, rc, msg, json_pack("{si}", "limit", HTTP_MAX_QUERY));
		return;
	}
	r->handler(req);
}

static void auth_done(http_req_t *req, int role)
{
	if (!req->h2o) {
		req_free(req);
		return;
	}
	if (role < 0) {
		http_reply_err(req, AT_EDB, "cannot check the token: database unavailable", NULL);
		return;
	}
	if (role == 0) {
		http_reply_err(req, AT_EUNAUTHORIZED, "invalid or revoked token", NULL);
		return;
	}
	req->role = (unsigned)role;
	if (!(req->route->r->roles & (unsigned)role)) {
		json_t *d = json_pack("{ss}", "role", http_role_name((unsigned)role));
		http_reply_err(req, AT_EFORBIDDEN, "this token's role may not do that", d);
		return;
	}
	dispatch(req);
}

static void make_request_id(http_req_t *req)
{
	size_t n;
	const char *h = http_req_header(req, "x-request-id", &n);
	if (h && n > 0 && n < sizeof req->id) {
		size_t i;
		for (i = 0; i < n; i++)
			if (!(h[i] == '-' || h[i] == '_' || (h[i] >= '0' && h[i] <= '9') ||
			      (h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z')))
				break;
		if (i == n) {
			memcpy(req->id, h, n);
			req->id[n] = 0;
			return;
		}
	}
	snprintf(req->id, sizeof req->id, "%08x-%llu", req->srv->id_prefix, (unsigned long long)++req->srv->next_id);
}

/*
 * Request smuggling. h2o 2.2 takes the first of several Content-Length
 * headers, and chunked over a Content-Length, and removes both from the
 * header list it hands us; a proxy in front that chose the other length would
 * read the rest of the body as a second request (or we would read its). RFC
 * 9112 6.3: such a message is refused (400) and the connection closed, so no
 * byte after it is read as a request.
 *
 * h2o parses every HTTP/1 request head with picohttpparser's
 * phr_parse_request, which libh2o.so exports and calls through its PLT; the
 * definition below comes first in symbol lookup, calls h2o's, and renames
 * every Content-Length and Transfer-Encoding header of a head whose length is
 * ambiguous to AMBIGUOUS_MARK. h2o then sees a request without a body and
 * on_req answers it (framing_refused). tests/test_hostile.py sends the
 * smuggling requests, so a libh2o linked without this hook fails there.
 */
struct phr_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};
typedef int (*phr_parse_request_fn)(const char *buf, size_t len, const char **method, size_t *method_len,
				    const char **path, size_t *path_len, int *minor_version, struct phr_header *headers,
				    size_t *num_headers, size_t last_len);
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
		      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
		      size_t last_len);

/* writable: h2o lower-cases header names in place */
static char ambiguous_mark[] = "x-atelier-ambiguous-length";
#define AMBIGUOUS_MARK_LEN (sizeof ambiguous_mark - 1)

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
		      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
		      size_t last_len)
{
	static phr_parse_request_fn next;
	if (!next)
		next = (phr_parse_request_fn)dlsym(RTLD_NEXT, "phr_parse_request");
	if (!next)
		return -1; /* cannot happen while libh2o is linked: refuse rather than parse nothing */
	int rc = next(buf, len, method, method_len, path, path_len, minor_version, headers, num_headers, last_len);
	if (rc <= 0)
		return rc;
	size_t ncl = 0, nte = 0;
	for (size_t i = 0; i < *num_headers; i++) {
		if (headers[i].name && h2o_lcstris(headers[i].name, headers[i].name_len, H2O_STRLIT("content-length")))
			ncl++;
		else if (headers[i].name &&
			 h2o_lcstris(headers[i].name, headers[i].name_len, H2O_STRLIT("transfer-encoding")))
			nte++;
	}
	if (ncl <= 1 && nte <= 1 && !(ncl && nte))
		return rc;
	for (size_t i = 0; i < *num_headers; i++)
		if (headers[i].name &&
		    (h2o_lcstris(headers[i].name, headers[i].name_len, H2O_STRLIT("content-length")) ||
		     h2o_lcstris(headers[i].name, headers[i].name_len, H2O_STRLIT("transfer-encoding")))) {
			headers[i].name = ambiguous_mark;
			headers[i].name_len = AMBIGUOUS_MARK_LEN;
		}
	return rc;
}

/* Returns 1 when it replied (400, and the connection closes after it). */
static int framing_refused(http_req_t *req)
{
	h2o_req_t *r = req->h2o;
	ssize_t i = h2o_find_header_by_str(&r->headers, ambiguous_mark, AMBIGUOUS_MARK_LEN, -1);
	if (i < 0)
		return 0;
	r->http1_is_persistent = 0;
	snprintf(req->path, sizeof req->path, "/");
	http_reply_err(req, AT_EINVAL,
		       "ambiguous message length: several Content-Length or Transfer-Encoding headers, or both", NULL);
	return 1;
}

/* h2o decodes %XX in path_normalized, so "/v1/runs/5%00" arrives as "5" and
 * a NUL: a path with a NUL or another control character names nothing we
 * serve and is refused rather than cut. Returns 1 when it replied. */
static int path_refused(http_req_t *req, size_t plen)
{
	for (size_t i = 0; i < plen; i++) {
		unsigned char c = (unsigned char)req->path[i];
		if (c < 0x20 || c == 0x7f) {
			snprintf(req->path, sizeof req->path, "/");
			http_reply_err(req, AT_EINVAL, "request path holds a control character (NUL, %00 .. %1f, %7f)",
				       json_pack("{si}", "offset", (int)i));
			return 1;
		}
	}
	return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *r)
{
	http_server_t *srv = *(http_server_t **)(self + 1);
	http_req_t *req = calloc(1, sizeof *req);
	if (!req) {
		h2o_send_error_503(r, "Service Unavailable", "out of memory", 0);
		return 0;
	}
	req->srv = srv;
	req->h2o = r;
	req->start_ns = now_ns();
	srv->pending++;
	req->link = h2o_mem_alloc_shared(&r->pool, sizeof *req->link, link_dispose);
	req->link->req = req;
	for (struct http_conn *c = srv->conns.next; c != &srv->conns; c = c->next)
		if (c->sock && c->sock->data == (void *)r->conn && !uv_is_closing((uv_handle_t *)&c->tcp)) {
			req->conn = c;
			break;
		}
	make_request_id(req);

	size_t plen = r->path_normalized.len;
	if (plen >= sizeof req->path) {
		req->route = NULL;
		snprintf(req->path, sizeof req->path, "/");
		http_reply_err(req, AT_EURITOOLONG, "request path too long", NULL);
		return 0;
	}
	memcpy(req->path, r->path_normalized.base, plen);
	req->path[plen] = 0;
	if (framing_refused(req) || path_refused(req, plen))
		return 0;
	/* a trailing slash is not significant */
	if (plen > 1 && req->path[plen - 1] == '/')
		req->path[plen - 1] = 0;

	const char *method = http_req_method(req);
	int path_matched = 0;
	for (size_t i = 0; i < srv->nroutes; i++) {
		struct compiled_route *cr = &srv->routes[i];
		if (!route_match(req, cr))
			continue;
		path_matched = 1;
		if (strcmp(cr->r->method, method) == 0 ||
		    (strcmp(method, "HEAD") == 0 && strcmp(cr->r->method, "GET") == 0)) {
			req->route = cr;
			break;
		}
	}
	if (!req->route) {
		req_clear_params(req);
		if (path_matched)
			http_reply_err(req, AT_EMETHOD, "method not allowed", json_pack("{ss}", "method", method));
		else
			http_reply_err(req, AT_ENOTFOUND, "no such route", json_pack("{ss}", "path", req->path));
		return 0;
	}
	if (req->route->r->roles == ROLE_PUBLIC || !srv->cfg.auth) {
		dispatch(req);
		return 0;
	}
	size_t hl;
	const char *auth = http_req_header(req, "authorization", &hl);
	if (!auth || hl < 8 || strncasecmp(auth, "Bearer ", 7) != 0) {
		http_req_add_header(req, "WWW-Authenticate", "Bearer");
		http_reply_err(req, AT_EUNAUTHORIZED, "missing bearer token", NULL);
		return 0;
	}
	int role = srv->cfg.auth(srv->cfg.auth_arg, req, auth + 7, hl - 7, auth_done);
	if (role >= 0)
		auth_done(req, role);
	return 0;
}

/* ---- server ---- */

static void conn_closed(uv_handle_t *h)
{
	struct http_conn *c = (struct http_conn *)h;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
}

static void on_accept(uv_stream_t *listener, int status)
{
	http_server_t *srv = listener->data;
	if (status != 0 || srv->closing)
		return;
	struct http_conn *c = calloc(1, sizeof *c);
	if (!c)
		return;
	uv_tcp_init(listener->loop, &c->tcp);
	c->srv = srv;
	c->next = srv->conns.next;
	c->prev = &srv->conns;
	c->next->prev = c;
	srv->conns.next = c;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, conn_closed);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_closed);
	c->sock = sock;
	c->seen = SIZE_MAX;
	c->since_ns = now_ns();
	h2o_accept(&srv->accept_ctx, sock);
	/* a plain connection is HTTP/1 from the start (h2o_http1_accept set sock->data) */
	if (!uv_is_closing((uv_handle_t *)&c->tcp) && sock->data)
		c->h1 = ((h2o_conn_t *)sock->data)->callbacks;
}

/* ---- idle and stalled requests ----
 *
 * h2o 2.2 gives a request one total deadline (http1.req_timeout: from its
 * first byte to the last of its body) and closes the connection without an
 * answer when it passes, so an 8 MiB body on a slow but steady link was cut
 * at 10 s. We move that deadline out to a backstop and watch progress
 * instead: every tick looks at each HTTP/1 connection h2o is reading from;
 * a change in the bytes it holds for the next request (sock->input->size)
 * is progress. No progress for idle_timeout: a request begun gets a 408
 * JSON answer (written straight to the socket: h2o has no request object to
 * answer through until the headers are whole) and the read side is shut, so
 * h2o sees EOF and closes the connection its own way; an empty keep-alive
 * connection is just closed, as h2o did at its deadline. While h2o handles a
 * request or writes a reply it does not read, and the connection is left
 * alone. HTTP/2 connections keep h2o's own idle timeout.
 */
static void answer_408(http_server_t *srv, struct http_conn *c, uint64_t now, int ceiling)
{
	char id[40];
	snprintf(id, sizeof id, "%08x-%llu", srv->id_prefix, (unsigned long long)++srv->next_id);
	json_t *o = json_pack("{ss,ss,s{sf,sI,sI},ss}", "error",
			      ceiling ? "request took too long to arrive"
				      : "request timed out: no bytes arrived for the idle timeout",
			      "code", at_err_name(AT_EREQTIMEOUT), "detail", "idle_seconds", (double)srv->idle_ns / 1e9,
			      "ceiling_seconds", (json_int_t)(srv->ceiling_ns / 1000000000u), "received",
			      (json_int_t)c->seen, "request_id", id);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!body)
		return;
	char head[256];
	int hn = snprintf(head, sizeof head,
			  "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
			  "Connection: close\r\nX-Request-Id: %s\r\n\r\n",
			  strlen(body) + 1, id);
	uv_buf_t bufs[3] = {uv_buf_init(head, (unsigned)hn), uv_buf_init(body, (unsigned)strlen(body)),
			    uv_buf_init((char *)"\n", 1)};
	/* small enough for an empty send buffer; nothing else writes now */
	(void)uv_try_write((uv_stream_t *)&c->tcp, bufs, 3);
	free(body);
	srv->errors[at_err_index(AT_EREQTIMEOUT)]++;
	count_status(&srv->unmatched, 408, c->begun_ns ? (double)(now - c->begun_ns) / 1e9 : 0);
	log_info("http: request timed out after %llu bytes (%s) [%s]", (unsigned long long)c->seen,
		 ceiling ? "ceiling" : "idle", id);
}

static void idle_tick(uv_timer_t *t)
{
	http_server_t *srv = t->data;
	uint64_t now = now_ns();
	for (struct http_conn *c = srv->conns.next; c != &srv->conns; c = c->next) {
		if (uv_is_closing((uv_handle_t *)&c->tcp) || !c->sock || c->timed_out)
			continue;
		h2o_conn_t *hc = c->sock->data;
		if (!hc || !c->h1 || hc->callbacks != c->h1 || !h2o_socket_is_reading(c->sock) || !c->sock->input) {
			c->seen = SIZE_MAX;
			c->since_ns = now;
			c->begun_ns = 0;
			continue;
		}
		size_t size = c->sock->input->size;
		if (size != c->seen) {
			c->seen = size;
			c->since_ns = now;
			if (size == 0)
				c->begun_ns = 0;
			else if (!c->begun_ns)
				c->begun_ns = now;
		}
		int ceiling = c->begun_ns && now - c->begun_ns >= srv->ceiling_ns;
		if (!ceiling && now - c->since_ns < srv->idle_ns)
			continue;
		c->timed_out = 1;
		if (size > 0)
			answer_408(srv, c, now, ceiling);
		uv_os_fd_t fd;
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			shutdown(fd, SHUT_RD);
	}
}

static void listener_failed_closed(uv_handle_t *h) { free(h->data); }

int http_server_new(uv_loop_t *loop, const struct http_config *cfg, const struct http_route *routes, size_t nroutes,
		    http_server_t **out)
{
	http_server_t *srv = calloc(1, sizeof *srv);
	if (!srv)
		return AT_ENOMEM;
	int rc = 0, listener_open = 0;
	srv->loop = loop;
	srv->conns.next = srv->conns.prev = &srv->conns;
	srv->cfg = *cfg;
	if (!srv->cfg.max_body)
		srv->cfg.max_body = (size_t)8 << 20;
	if (!srv->cfg.host)
		srv->cfg.host = "127.0.0.1";
	srv->id_prefix = (uint32_t)(now_ns() ^ ((uint64_t)getpid() << 16));
	srv->routes = calloc(nroutes, sizeof *srv->routes);
	if (!srv->routes) {
		free(srv);
		return AT_ENOMEM;
	}
	srv->nroutes = nroutes;
	for (size_t i = 0; i < nroutes; i++) {
		rc = compile_route(&srv->routes[i], &routes[i]);
		if (rc < 0) {
			log_error("http: bad route %s %s", routes[i].method, routes[i].pattern);
			goto fail;
		}
	}
	static const struct http_route unmatched = {"*", "/", NULL, 0, "unmatched", .op = "unmatched"};
	srv->unmatched.r = &unmatched;

	h2o_config_init(&srv->config);
	srv->config.server_name = h2o_iovec_init(cfg->server_name ? cfg->server_name : "atelier",
						 strlen(cfg->server_name ? cfg->server_name : "atelier"));
	srv->config.max_request_entity_size = srv->cfg.max_body * 2 + 4096;
	if (srv->cfg.idle_timeout <= 0)
		srv->cfg.idle_timeout = 10;
	srv->idle_ns = (uint64_t)(srv->cfg.idle_timeout * 1e9);
	srv->ceiling_ns = (uint64_t)HTTP_REQUEST_CEILING_S * 1000000000u;
	if (srv->ceiling_ns < 2 * srv->idle_ns)
		srv->ceiling_ns = 2 * srv->idle_ns;
	/* h2o's total deadline only backs up idle_tick's (see there) */
	srv->config.http1.req_timeout = srv->ceiling_ns / 1000000u + 60000;
	h2o_hostconf_t *host = h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
	h2o_handler_t *h = h2o_create_handler(pc, sizeof *h + sizeof(http_server_t *));
	*(http_server_t **)(h + 1) = srv;
	h->on_req = on_req;
	h2o_context_init(&srv->ctx, loop, &srv->config);
	srv->accept_ctx.ctx = &srv->ctx;
	srv->accept_ctx.hosts = srv->config.hosts;

	struct sockaddr_storage addr;
	if (uv_ip4_addr(srv->cfg.host, cfg->port, (struct sockaddr_in *)&addr) != 0 &&
	    uv_ip6_addr(srv->cfg.host, cfg->port, (struct sockaddr_in6 *)&addr) != 0) {
		log_error("http: bad listen address %s", srv->cfg.host);
		rc = AT_EINVAL;
		goto fail_ctx;
	}
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	int r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&srv->listener, 1024, on_accept);
	if (r != 0) {
		log_error("http: cannot listen on %s:%d: %s", srv->cfg.host, cfg->port, uv_strerror(r));
		listener_open = 1;
		rc = AT_EIO;
		goto fail_ctx;
	}
	struct sockaddr_storage bound;
	int blen = sizeof bound;
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
	srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						      : ((struct sockaddr_in *)&bound)->sin_port);
	uv_timer_init(loop, &srv->close_timer);
	srv->close_timer.data = srv;
	uv_timer_init(loop, &srv->idle_timer);
	srv->idle_timer.data = srv;
	uint64_t tick_ms = srv->idle_ns / 4000000u;
	tick_ms = tick_ms < 100 ? 100 : tick_ms > 1000 ? 1000 : tick_ms;
	uv_timer_start(&srv->idle_timer, idle_tick, tick_ms, tick_ms);
	uv_unref((uv_handle_t *)&srv->idle_timer);
	*out = srv;
	return 0;
fail_ctx:
	h2o_context_dispose(&srv->ctx);
	h2o_config_dispose(&srv->config);
fail:
	for (size_t i = 0; i < nroutes; i++)
		for (int s = 0; s < srv->routes[i].nsegs; s++) {
			free(srv->routes[i].segs[s].lit);
			free(srv->routes[i].segs[s].name);
			free(srv->routes[i].segs[s].suffix);
		}
	free(srv->routes);
	/* The listener lives inside srv, so srv goes in its close callback, on
	 * the caller's loop. The close is asked for only now: h2o_context_dispose
	 * ends with a uv_run(NOWAIT) that would run the callback mid-dispose. */
	if (listener_open)
		uv_close((uv_handle_t *)&srv->listener, listener_failed_closed);
	else
		free(srv);
	return rc;
}

int http_server_port(const http_server_t *srv) { return srv->port; }
size_t http_server_pending(const http_server_t *srv) { return srv->pending; }

static void server_free(http_server_t *srv)
{
	h2o_context_dispose(&srv->ctx);
	h2o_config_dispose(&srv->config);
	for (size_t i = 0; i < srv->nroutes; i++)
		for (int s = 0; s < srv->routes[i].nsegs; s++) {
			free(srv->routes[i].segs[s].lit);
			free(srv->routes[i].segs[s].name);
			free(srv->routes[i].segs[s].suffix);
		}
	free(srv->routes);
	void (*cb)(void *) = srv->on_closed;
	void *arg = srv->closed_arg;
	free(srv);
	if (cb)
		cb(arg);
}

static void close_timer_closed(uv_handle_t *h) { server_free(h->data); }

/*
 * Shutdown: stop accepting; let requests in flight finish (bounded, 10 s);
 * then end every remaining (idle keep-alive) connection by shutting down its
 * read side, so h2o sees EOF and closes it through its own code path; once
 * h2o has no connection left, its context can be disposed.
 */
static void close_poll(uv_timer_t *t)
{
	http_server_t *srv = t->data;
	srv->close_waits++;
	if (srv->pending > 0 && srv->close_waits < 1000)
		return;
	if (srv->close_waits % 50 == 1 || srv->pending == 0) {
		for (struct http_conn *c = srv->conns.next; c != &srv->conns; c = c->next) {
			uv_os_fd_t fd;
			if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
				shutdown(fd, SHUT_RD);
		}
	}
	int busy = !h2o_linklist_is_empty(&srv->ctx.http1._conns) || srv->conns.next != &srv->conns;
	if (busy && srv->close_waits < 1500)
		return;
	if (busy)
		log_warn("http: %s connections still open at shutdown", "some");
	uv_timer_stop(t);
	uv_close((uv_handle_t *)t, close_timer_closed);
}

static void listener_closed(uv_handle_t *h)
{
	http_server_t *srv = h->data;
	uv_timer_start(&srv->close_timer, close_poll, 0, 10);
}

void http_server_close(http_server_t *srv, void (*on_closed)(void *arg), void *arg)
{
	if (!srv || srv->closing)
		return;
	srv->closing = 1;
	srv->on_closed = on_closed;
	srv->closed_arg = arg;
	/* closed before the listener, so before close_timer: srv outlives it */
	uv_timer_stop(&srv->idle_timer);
	uv_close((uv_handle_t *)&srv->idle_timer, NULL);
	uv_close((uv_handle_t *)&srv->listener, listener_closed);
}

/* ---- metrics and docs ---- */

static int metrics_route(const struct compiled_route *cr, struct at_buf *b)
{
	int rc = 0;
	for (int i = 0; i < HTTP_MAX_STATUS_SLOTS && cr->statuses[i] && rc == 0; i++)
		rc = at_buf_printf(b, "atelier_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
				   cr->r->method, cr->r->pattern, cr->statuses[i], (unsigned long long)cr->counts[i]);
	if (rc == 0 && cr->seconds_count)
		rc = at_buf_printf(b,
				   "atelier_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
				   "atelier_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n",
				   cr->r->method, cr->r->pattern, cr->seconds_sum, cr->r->method, cr->r->pattern,
				   (unsigned long long)cr->seconds_count);
	return rc;
}

int http_server_metrics(const http_server_t *srv, struct at_buf *b)
{
	int rc = at_buf_addstr(b, "# HELP atelier_http_requests_total HTTP requests by route and status.\n"
				  "# TYPE atelier_http_requests_total counter\n"
				  "# HELP atelier_http_request_duration_seconds Time to reply, by route.\n"
				  "# TYPE atelier_http_request_duration_seconds summary\n");
	for (size_t i = 0; i < srv->nroutes && rc == 0; i++)
		rc = metrics_route(&srv->routes[i], b);
	if (rc == 0)
		rc = metrics_route(&srv->unmatched, b);
	if (rc == 0)
		rc = at_buf_addstr(
			b, "# HELP atelier_http_errors_total Error replies by error code (lib/err.h) and status.\n"
			   "# TYPE atelier_http_errors_total counter\n");
	for (int i = 0; i < AT_ERR_COUNT && rc == 0; i++) {
		int err = AT_ERR_FIRST_ + 1 + i;
		if (srv->errors[i])
			rc = at_buf_printf(b, "atelier_http_errors_total{code=\"%s\",status=\"%d\"} %llu\n",
					   at_err_name(err), at_err_http_status(err),
					   (unsigned long long)srv->errors[i]);
	}
	if (rc == 0)
		rc = at_buf_printf(b,
				   "# HELP atelier_http_pending_requests Requests waiting for a reply.\n"
				   "# TYPE atelier_http_pending_requests gauge\natelier_http_pending_requests %zu\n",
				   srv->pending);
	return rc;
}

/* ---- the OpenAPI document ---- */

/* operationId when the route names none: method + the pattern's words,
 * camel-cased ("GET /v1/runs/{id}/metrics" -> "getV1RunsIdMetrics"). */
static void derive_op(const struct http_route *r, char *out, size_t cap)
{
	size_t k = 0;
	for (const char *m = r->method; *m && k + 1 < cap; m++)
		out[k++] = (char)(*m | 0x20);
	int up = 1;
	for (const char *p = r->pattern; *p && k + 1 < cap; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
			up = 1;
			continue;
		}
		out[k++] = up && c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
		up = 0;
	}
	out[k] = 0;
}

/* Borrowed text checked by compile_route; NULL when unset. */
static json_t *load_text(const char *text) { return text ? json_loads(text, 0, NULL) : NULL; }

/* {"type": schema} -> {"type": {"schema": schema}} */
static json_t *content_of(json_t *types)
{
	json_t *c = json_object();
	const char *ct;
	json_t *schema;
	json_object_foreach(types, ct, schema) json_object_set_new(c, ct, json_pack("{sO}", "schema", schema));
	return c;
}

static json_t *parameters_of(const struct compiled_route *cr)
{
	const struct http_route *r = cr->r;
	json_t *given = load_text(r->params);
	json_t *list = json_array();
	for (int s = 0; s < cr->nsegs; s++) {
		if (!cr->segs[s].name)
			continue;
		json_t *schema = json_object_get(given, cr->segs[s].name);
		json_t *p = json_pack("{ss,ss,sb}", "name", cr->segs[s].name, "in", "path", "required", 1);
		json_object_set_new(p, "schema", schema ? json_deep_copy(schema) : json_pack("{ss}", "type", "string"));
		json_array_append_new(list, p);
	}
	const char *name;
	json_t *schema;
	json_object_foreach(given, name, schema)
	{
		int in_path = 0;
		for (int s = 0; s < cr->nsegs; s++)
			if (cr->segs[s].name && strcmp(cr->segs[s].name, name) == 0)
				in_path = 1;
		/* "X-..." names a request header the route requires (a receipt) */
		int header = strncmp(name, "X-", 2) == 0;
		if (!in_path)
			json_array_append_new(list, json_pack("{ss,ss,sb,sO}", "name", name, "in",
							      header ? "header" : "query", "required", header, "schema",
							      schema));
	}
	/* a schema's description is the parameter's */
	size_t i;
	json_t *p;
	json_array_foreach(list, i, p)
	{
		json_t *sc = json_deep_copy(json_object_get(p, "schema"));
		json_t *d = json_object_get(sc, "description");
		if (d) {
			json_object_set(p, "description", d);
			json_object_del(sc, "description");
		}
		json_object_set_new(p, "schema", sc);
	}
	json_decref(given);
	return list;
}

static json_t *operation_of(const struct compiled_route *cr)
{
	const struct http_route *r = cr->r;
	char derived[128];
	derive_op(r, derived, sizeof derived);
	json_t *roles = json_array();
	char who[64] = "Public: no token needed.";
	size_t n = 0;
	for (size_t j = 0; j < sizeof role_names / sizeof role_names[0]; j++)
		if (r->roles & role_names[j].bit) {
			json_array_append_new(roles, json_string(role_names[j].name));
			n += (size_t)snprintf(who + n, sizeof who - n, "%s%s",
					      n ? ", " : "Roles: ", role_names[j].name);
		}
	json_t *op = json_pack("{ss,ss,ss,so}", "operationId", r->op ? r->op : derived, "summary", r->doc ? r->doc : "",
			       "description", who, "x-roles", roles);
	json_object_set_new(op, "tags", json_pack("[s]", r->tag ? r->tag : "other"));
	/* the document-wide bearer requirement, lifted where no token is needed */
	if (r->roles == ROLE_PUBLIC)
		json_object_set_new(op, "security", json_array());
	json_t *params = parameters_of(cr);
	if (json_array_size(params))
		json_object_set_new(op, "parameters", params);
	else
		json_decref(params);
	json_t *body = load_text(r->body);
	if (body) {
		json_object_set_new(op, "requestBody",
				    json_pack("{sb,so}", "required", 1, "content", content_of(body)));
		json_decref(body);
	}
	char status[8];
	snprintf(status, sizeof status, "%d", r->status ? r->status : 200);
	json_t *ok = json_pack("{ss}", "description", reason_phrase(r->status ? r->status : 200));
	json_t *reply = load_text(r->reply);
	if (reply) {
		json_object_set_new(ok, "content", content_of(reply));
		json_decref(reply);
	}
	json_t *responses = json_object();
	json_object_set_new(responses, status, ok);
	json_t *more = load_text(r->replies);
	const char *code;
	json_t *resp;
	json_object_foreach(more, code, resp)
	{
		json_t *c = json_object_get(resp, "content");
		const char *d = json_string_value(json_object_get(resp, "description"));
		json_t *o = json_pack("{ss}", "description", d ? d : reason_phrase((int)strtol(code, NULL, 10)));
		if (c)
			json_object_set_new(o, "content", content_of(c));
		json_object_set_new(responses, code, o);
	}
	json_decref(more);
	json_object_set_new(responses, "4XX", json_pack("{ss}", "$ref", "#/components/responses/Error"));
	json_object_set_new(responses, "5XX", json_pack("{ss}", "$ref", "#/components/responses/Error"));
	json_object_set_new(op, "responses", responses);
	return op;
}

json_t *http_server_openapi(const http_server_t *srv, const char *title, const struct http_tag *tags, size_t ntags)
{
	json_t *paths = json_object();
	for (size_t i = 0; i < srv->nroutes; i++) {
		const struct compiled_route *cr = &srv->routes[i];
		/* OpenAPI has no "{rest*}": the rest of the path is one {rest} */
		char path[512];
		size_t k = 0;
		for (const char *q = cr->r->pattern; *q && k + 1 < sizeof path; q++)
			if (!(*q == '*' && q[1] == '}'))
				path[k++] = *q;
		path[k] = 0;
		json_t *item = json_object_get(paths, path);
		if (!item) {
			item = json_object();
			json_object_set_new(paths, path, item);
		}
		char m[16];
		for (k = 0; cr->r->method[k] && k < sizeof m - 1; k++)
			m[k] = (char)(cr->r->method[k] | 0x20);
		m[k] = 0;
		json_object_set_new(item, m, operation_of(cr));
	}
	json_t *tag_list = json_array();
	for (size_t i = 0; i < ntags; i++)
		json_array_append_new(tag_list, json_pack("{ss,ss}", "name", tags[i].name, "description", tags[i].doc));
	/* every reply that is not a success carries this body (http_reply_err) */
	json_t *error = json_pack("{ss,s[ss],s{s{ss,ss},s{ss,ss},s{ss},s{ss,ss}}}", "type", "object", "required",
				  "error", "request_id", "properties", "error", "type", "string", "description",
				  "what went wrong, for a person", "code", "type", "string", "description",
				  "the AT_E* error's symbolic name, for a program", "detail", "description",
				  "more about the error: the field, the limit, the state", "request_id", "type",
				  "string", "description", "also sent as X-Request-Id and logged");
	json_t *error_reply = json_pack("{ss,s{s{s{ss}}}}", "description", "an error", "content", "application/json",
					"schema", "$ref", "#/components/schemas/Error");
	json_t *components = json_pack("{s{so},s{so},s{s{ss,ss}}}", "schemas", "Error", error, "responses", "Error",
				       error_reply, "securitySchemes", "bearer", "type", "http", "scheme", "bearer");
	/* tokens everywhere but where a route lifts it (operation_of) */
	return json_pack("{ss,s{ss,ss},s[{ss}],s[{s[]}],so,so,so}", "openapi", "3.0.3", "info", "title", title,
			 "version", "1", "servers", "url", "/", "security", "bearer", "tags", tag_list, "paths", paths,
			 "components", components);
}
