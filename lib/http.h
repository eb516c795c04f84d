/*
 * http.h — the HTTP server every Atelier binary uses: h2o (HTTP/1.1, cleartext HTTP/2) on the
 * caller's libuv loop, a route table, bearer-token roles, request ids, body
 * caps, one JSON error function, per-route request counters and error counts
 * by code for /metrics.
 *
 * Ownership: an http_req_t is created by the server for each request and is
 * valid until a reply function is called (after which the handler must not
 * touch it). A handler may reply later (after a database round-trip); if the
 * client went away meanwhile, http_req_alive() is 0 and the reply functions
 * just release the request. Exactly one reply call per request.
 */
#ifndef ATELIER_HTTP_H
#define ATELIER_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "err.h"

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;

/* Roles, as a bit mask on routes. ROLE_PUBLIC routes need no token. */
enum http_role {
	ROLE_PUBLIC = 0,
	ROLE_VIEWER = 1u << 0,
	ROLE_NODE = 1u << 1,
	ROLE_OPERATOR = 1u << 2,
};
#define ROLE_ANY (ROLE_VIEWER | ROLE_NODE | ROLE_OPERATOR)
const char *http_role_name(unsigned role);
unsigned http_role_parse(const char *name); /* 0 when unknown */

typedef void (*http_handler)(http_req_t *req);

struct http_route {
	const char *method; /* "GET", "POST", ... */
	const char
		*pattern; /* "/v1/sketches/{id}" — {name} matches one segment; a trailing "{rest*}" matches the rest */
	http_handler handler;
	unsigned roles;  /* ROLE_PUBLIC or a mask of roles allowed */
	const char *doc; /* one line, for --help and the OpenAPI document */
	/* The rest is for the OpenAPI document only; give them by name
	 * (.op = ...). Every JSON text is checked by http_server_new, which
	 * refuses a table whose texts do not parse as JSON objects. */
	const char *op;  /* operationId; unset: derived from method and pattern */
	const char *tag; /* the subsystem the route belongs to */
	/* {"name": schema, ...}: a name in the pattern is a path parameter
	 * (required; one not listed is a string), one starting "X-" a request
	 * header (required), any other a query parameter (optional). A
	 * schema's "description" becomes the parameter's. */
	const char *params;
	const char *body;  /* request body, {"content/type": schema, ...}; NULL: none */
	const char *reply; /* success reply, {"content/type": schema, ...}; NULL: no content */
	int status;        /* success status; 0 means 200 */
	/* further responses, {"304": {"description": ..., "content": {"content/type":
	 * schema}}, ...}; errors (4XX, 5XX: the shared Error body) are always added */
	const char *replies;
};

/* Building blocks for the JSON texts above. */
#define HTTP_JSON(schema) "{\"application/json\":" schema "}"
#define HTTP_BINARY "{\"type\":\"string\",\"format\":\"binary\"}"
#define HTTP_TEXT "{\"type\":\"string\"}"

/* A tag of the OpenAPI document: a subsystem's name and one line about it. */
struct http_tag {
	const char *name;
	const char *doc;
};

/* Token check: return the role at once (a ROLE_* bit), 0 for an invalid token,
 * or -1 when the look-up is pending, in which case done(req, role) is called
 * later exactly once (role 0 = invalid, -1 = could not check: 503). */
typedef void (*http_auth_done)(http_req_t *req, int role);
typedef int (*http_auth_fn)(void *arg, http_req_t *req, const char *token, size_t len, http_auth_done done);

struct http_config {
	const char *host; /* default 127.0.0.1 */
	int port;         /* 0 = pick a free port; http_server_port() tells */
	size_t max_body;  /* bodies above this get 413 JSON (default 8 MiB) */
	/* Seconds a connection may go without a byte while h2o waits for a
	 * request (default 10): a request begun is answered 408 JSON and the
	 * connection closed; an idle keep-alive connection is closed. A body
	 * that keeps arriving is never cut, up to HTTP_REQUEST_CEILING_S. */
	double idle_timeout;
	const char *server_name;
	http_auth_fn auth; /* NULL = every route is public */
	void *auth_arg;
	void *app; /* the application's context, http_req_app() */
};

/* The longest a request may take to arrive, however steadily (408 after). */
#define HTTP_REQUEST_CEILING_S 600

int http_server_new(uv_loop_t *loop, const struct http_config *cfg, const struct http_route *routes, size_t nroutes,
		    http_server_t **out) AT_MUST_CHECK;
int http_server_port(const http_server_t *srv);
/* Stop accepting, close every handle; on_closed runs when all are closed. */
void http_server_close(http_server_t *srv, void (*on_closed)(void *arg), void *arg);
/* Prometheus text lines for http_requests_total{route,status} etc., appended to buf. */
int http_server_metrics(const http_server_t *srv, struct at_buf *buf) AT_MUST_CHECK;
/* The route table as an OpenAPI 3 document: paths, operations with their
 * parameters, bodies and replies, the bearer scheme (public routes need
 * none), the shared error body, roles as x-roles; tags (ntags entries)
 * describe the routes' .tag names. */
json_t *http_server_openapi(const http_server_t *srv, const char *title, const struct http_tag *tags, size_t ntags);
/* Number of requests waiting for a reply (held long-polls included). */
size_t http_server_pending(const http_server_t *srv);

/* ---- request accessors ---- */
void *http_req_app(const http_req_t *req);
const char *http_req_method(const http_req_t *req);
const char *http_req_path(const http_req_t *req);                    /* without the query string, NUL-terminated */
const char *http_req_param(const http_req_t *req, const char *name); /* route {name}, or NULL */
/* Query-string value (URL-decoded, NUL-terminated, owned by req) or NULL. A
 * request with more than 16 named pairs never reaches its handler: it is
 * answered 400 (AT_ERANGE) before. */
const char *http_req_query(http_req_t *req, const char *name);
/* The query-string parser behind it (exported for tests and the fuzz target):
 * splits q (len bytes, without the '?') at '&' into up to max URL-decoded
 * name/value pairs (malloc'd, the caller frees both); pairs without a name are
 * skipped. Returns the number of pairs stored, or AT_ERANGE when there are
 * more than max (AT_ENOMEM when out of memory), and then stores nothing. */
int http_query_parse(const char *q, size_t len, char **names, char **values, int max);
/* A path parameter that is an id: ASCII digits only (no sign, space or NUL),
 * 1..INT64_MAX. Returns 0 with *out set, or replies 400 (AT_EINVAL, detail
 * {"param": name, "value": ...}) and returns AT_EINVAL. */
int http_req_param_id(http_req_t *req, const char *name, int64_t *out) AT_MUST_CHECK;
/* The parser behind it, for values from elsewhere: 0 or AT_EINVAL. */
int http_parse_id(const char *s, int64_t *out) AT_MUST_CHECK;
/* Header value (not NUL-terminated) or NULL; *len set. Case-insensitive name. */
const char *http_req_header(const http_req_t *req, const char *name, size_t *len);
const uint8_t *http_req_body(const http_req_t *req, size_t *len);
unsigned http_req_role(const http_req_t *req);
/* The TCP peer's address (the client, or the proxy in front of it) into out:
 * 0, or AT_EUNAVAILABLE once the connection is gone. */
int http_req_peer(const http_req_t *req, struct sockaddr_storage *out) AT_MUST_CHECK;
/* Who the bearer token belongs to, told by the auth function (http_auth_fn)
 * before it answers with a role: the token's id (0: not told) and the serving
 * node it is bound to ("" when none; copied, at most 64 bytes kept). */
void http_req_set_token(http_req_t *req, int64_t token_id, const char *node);
int64_t http_req_token_id(const http_req_t *req);
const char *http_req_token_node(const http_req_t *req);
/* Who the token belongs to (its name, truncated to 63 bytes), for audit
 * records such as the promotion ledger: set by the auth function before it
 * answers, "" when the token has no name or the route is public. */
void http_req_set_principal(http_req_t *req, const char *name);
const char *http_req_principal(const http_req_t *req);
const char *http_req_id(const http_req_t *req); /* request id, also sent back as X-Request-Id */
int http_req_alive(const http_req_t *req);
/* 1 when the client is known to have left: h2o dropped the request, or the
 * connection's read side is at EOF or reset (h2o does not read while a
 * request is handled, so only a look at the socket tells). A client that
 * half-closes after its request counts as gone, as in nginx. One syscall:
 * ask before starting costly work for the request. */
int http_req_gone(const http_req_t *req);
/* Arbitrary per-request slot for the handler. */
void http_req_set_data(http_req_t *req, void *data);
void *http_req_data(const http_req_t *req);
/* Parse the body as JSON (object); on failure replies itself (AT_EPARSE or
 * AT_EINVAL: 400) and returns NULL. */
json_t *http_req_json_body(http_req_t *req);

/* ---- replies (exactly one per request) ---- */
/* Takes ownership of body (json_decref'd). */
void http_reply_json(http_req_t *req, int status, json_t *body);
/* The one error reply: an AT_E* code, never a status. The status is the error
 * table's (at_err_http_status), the body {"error": msg (at_strerror(err) when
 * NULL), "code": at_err_name(err), "detail": detail, "request_id": ...}, and
 * the reply is counted in atelier_http_errors_total{code,status}. msg should
 * name what failed and where ("no such run", "limit must be 1..500"). Takes
 * detail (may be NULL). A code outside the table is answered as AT_EINTERNAL. */
void http_reply_err(http_req_t *req, int err, const char *msg, json_t *detail);
/* Copies data. */
void http_reply_bytes(http_req_t *req, int status, const char *content_type, const void *data, size_t len);
/* Takes ownership of a malloc'd buffer. */
void http_reply_owned(http_req_t *req, int status, const char *content_type, void *data, size_t len);
/* Finish a reply built in a buffer: rc < 0 answers with that error (the
 * buffer is freed); else 200 with the buffer's contents (taken). */
void http_reply_buf(http_req_t *req, int rc, struct at_buf *b, const char *content_type);
/* Empty-body reply (204, 304, ...). Not for errors: those are http_reply_err. */
void http_reply_empty(http_req_t *req, int status);
/* The status logged for a request whose client left, or whose work was
 * cancelled, before it could be answered (nginx's convention). */
#define HTTP_STATUS_CLIENT_GONE 499
/* Extra response header to send with the reply (copied). Call before replying.
 * Up to 8 per request. A sticky error, and on purpose not AT_MUST_CHECK: one
 * that does not fit (AT_ERANGE) or cannot be copied (AT_ENOMEM) is logged and
 * turns the request's next reply (any reply function, or http_stream_start*,
 * which then returns NULL) into a 500, never a reply without the header. A
 * caller has no better answer than that 500, so a check at each call would
 * write the same reply by hand (and gcc's warn_unused_result is not silenced
 * by a (void) cast). The return value says what happened, for tests. */
int http_req_add_header(http_req_t *req, const char *name, const char *value);

/* ---- streamed responses (Server-Sent Events, long downloads) ----
 * http_stream_start consumes req (no reply call follows) and starts a
 * response of unknown length. Writes are copied and sent in order; while a
 * send is in flight later writes are buffered (up to 4 MiB, then
 * AT_ETOOBIG). After the client leaves, writes return AT_ECANCELLED. The
 * caller ends every stream with http_stream_end (which frees its side). */
typedef struct http_stream http_stream_t;
http_stream_t *http_stream_start(http_req_t *req, int status, const char *content_type);
/* The same with a known body length (sent as Content-Length). */
http_stream_t *http_stream_start_sized(http_req_t *req, int status, const char *content_type, uint64_t length);
/* Bytes accepted by http_stream_write but not yet handed to the socket. */
size_t http_stream_buffered(const http_stream_t *s);
/* cb runs (from the loop) whenever everything written so far has been sent. */
void http_stream_on_drain(http_stream_t *s, void (*cb)(void *arg), void *arg);
int http_stream_write(http_stream_t *s, const void *data, size_t len) AT_MUST_CHECK;
int http_stream_alive(const http_stream_t *s);
void http_stream_end(http_stream_t *s);

#endif
