/* Unit tests for lib/http.c: a real server on a libuv loop (main thread) and
 * a raw HTTP/1.1 client on a second thread. Routes with parameters and
 * suffixes, 404/405, query decoding, roles (at once and deferred), body caps,
 * the error shape, request ids, metrics, the OpenAPI document, and a clean
 * loop close. */
#include <arpa/inet.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"
#include "test.h"

static uv_loop_t loop;
static http_server_t *srv;
static int port;

static void h_echo(http_req_t *req)
{
	const char *q = http_req_query(req, "q");
	http_reply_json(req, 200,
			json_pack("{ss,ss?,ss?,si}", "path", http_req_path(req), "id", http_req_param(req, "id"), "q",
				  q, "role", (int)http_req_role(req)));
}

static void h_png(http_req_t *req)
{
	http_reply_bytes(req, 200, "image/png", http_req_param(req, "id"), strlen(http_req_param(req, "id")));
}

static void h_body(http_req_t *req)
{
	size_t n;
	http_req_body(req, &n);
	http_reply_json(req, 201, json_pack("{sI}", "len", (json_int_t)n));
}

static void deferred_done(uv_timer_t *t)
{
	http_req_t *req = t->data;
	http_reply_json(req, 200, json_pack("{ss}", "later", "yes"));
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void h_later(http_req_t *req)
{
	uv_timer_t *t = malloc(sizeof *t);
	uv_timer_init(&loop, t);
	t->data = req;
	uv_timer_start(t, deferred_done, 20, 0);
}

static void h_metrics(http_req_t *req)
{
	struct at_buf b;
	at_buf_init(&b, 0);
	http_reply_buf(req, http_server_metrics(srv, &b), &b, "text/plain");
}

/* Nine extra headers: one more than fit. */
static int add_header_rc[9];
static void h_headers(http_req_t *req)
{
	static const char *const names[9] = {"x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g", "x-h", "x-i"};
	for (int i = 0; i < 9; i++)
		add_header_rc[i] = http_req_add_header(req, names[i], "v");
	http_reply_json(req, 200, json_pack("{ss}", "all", "there"));
}

/* The same before a stream: the 206 must not start without its headers. */
static int stream_started;
static void h_stream_headers(http_req_t *req)
{
	for (int i = 0; i < 9; i++)
		http_req_add_header(req, "content-range", "bytes 0-1/2");
	http_stream_t *s = http_stream_start_sized(req, 206, "application/octet-stream", 2);
	stream_started = s != NULL;
	if (s) {
		(void)!http_stream_write(s, "ab", 2);
		http_stream_end(s);
	}
}

static const struct http_route routes[] = {
	{"GET", "/headers", h_headers, ROLE_PUBLIC, "nine extra headers", .tag = "things"},
	{"GET", "/stream-headers", h_stream_headers, ROLE_PUBLIC, "nine extra headers, then a stream", .tag = "things"},
	{"GET", "/things/{id}.png", h_png, ROLE_PUBLIC, "png", .op = "getThingImage", .tag = "things",
	 .params = "{\"id\":{\"type\":\"integer\"}}", .reply = "{\"image/png\":" HTTP_BINARY "}"},
	{"GET", "/things/{id}", h_echo, ROLE_PUBLIC, "echo", .tag = "things",
	 .params = "{\"q\":{\"type\":\"string\",\"description\":\"echoed\"}}",
	 .reply = HTTP_JSON("{\"type\":\"object\"}")},
	{"POST", "/things", h_body, ROLE_OPERATOR, "body", .op = "postThing", .tag = "things",
	 .body = "{\"application/octet-stream\":" HTTP_BINARY "}", .status = 201,
	 .replies = "{\"202\":{\"description\":\"later\",\"content\":" HTTP_JSON("{\"type\":\"object\"}") "}}"},
	{"GET", "/secret", h_echo, ROLE_VIEWER | ROLE_OPERATOR, "secret", .tag = "things"},
	{"GET", "/slow-auth", h_echo, ROLE_NODE, "deferred auth", .tag = "things"},
	{"GET", "/later", h_later, ROLE_PUBLIC, "deferred reply", .tag = "things"},
	{"GET", "/metrics", h_metrics, ROLE_PUBLIC, "metrics", .tag = "ops"},
};

/* Tokens: "op" operator, "vw" viewer, "slow" = node after a deferred look-up. */
static void auth_later(uv_timer_t *t)
{
	void **ctx = t->data;
	((http_auth_done)ctx[1])(ctx[0], ROLE_NODE);
	free(ctx);
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static int auth(void *arg, http_req_t *req, const char *tok, size_t len, http_auth_done done)
{
	if (len == 2 && !memcmp(tok, "op", 2))
		return ROLE_OPERATOR;
	if (len == 2 && !memcmp(tok, "vw", 2))
		return ROLE_VIEWER;
	if (len == 4 && !memcmp(tok, "slow", 4)) {
		uv_timer_t *t = malloc(sizeof *t);
		void **ctx = malloc(2 * sizeof *ctx);
		ctx[0] = req;
		ctx[1] = (void *)done;
		uv_timer_init(&loop, t);
		t->data = ctx;
		uv_timer_start(t, auth_later, 10, 0);
		return -1;
	}
	return 0;
}

/* ---- client ---- */

struct call {
	const char *raw; /* request head, without the final CRLF CRLF */
	size_t body_len;
	char resp[65536];
	int status;
	const char *body;
};

static void do_call(struct call *c)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		c->status = -1;
		close(fd);
		return;
	}
	/* raw is "METHOD PATH" then optional "\r\nHeader: v" lines */
	char head[1024];
	const char *eol = strstr(c->raw, "\r\n");
	int line_len = eol ? (int)(eol - c->raw) : (int)strlen(c->raw);
	int n = snprintf(head, sizeof head,
			 "%.*s HTTP/1.1%s\r\nHost: t\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n", line_len,
			 c->raw, eol ? eol : "", c->body_len);
	if (write(fd, head, (size_t)n) != n)
		c->status = -1;
	char *zeros = calloc(1, c->body_len + 1);
	size_t off = 0;
	while (off < c->body_len) {
		ssize_t w = write(fd, zeros + off, c->body_len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(zeros);
	size_t got = 0;
	ssize_t r;
	while (got < sizeof c->resp - 1 && (r = read(fd, c->resp + got, sizeof c->resp - 1 - got)) > 0)
		got += (size_t)r;
	c->resp[got] = 0;
	close(fd);
	c->status = 0;
	sscanf(c->resp, "HTTP/1.1 %d", &c->status);
	const char *b = strstr(c->resp, "\r\n\r\n");
	c->body = b ? b + 4 : "";
}

static struct call *calls;
static size_t ncalls;
static volatile int client_done;

static void *client_main(void *arg)
{
	for (size_t i = 0; i < ncalls; i++)
		do_call(&calls[i]);
	client_done = 1;
	return NULL;
}

static void wakeup(uv_timer_t *t)
{
	if (client_done)
		uv_stop(&loop);
}

static void run_calls(struct call *cs, size_t n)
{
	calls = cs;
	ncalls = n;
	client_done = 0;
	pthread_t th;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, wakeup, 5, 5);
	pthread_create(&th, NULL, client_main, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static void start(void)
{
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	struct http_config cfg = {.port = 0, .max_body = 1000, .auth = auth};
	ASSERT_EQ_INT(http_server_new(&loop, &cfg, routes, sizeof routes / sizeof routes[0], &srv), 0);
	port = http_server_port(srv);
	ASSERT_OP_INT(port, >, 0);
}

static int closed;
static void on_closed(void *arg) { closed = 1; }

static void stop(void)
{
	closed = 0;
	http_server_close(srv, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(closed, 1);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

TEST(routes_params_and_errors)
{
	start();
	struct call c[] = {
		{.raw = "GET /things/42?q=a%20b+c"}, {.raw = "GET /things/42.png"}, {.raw = "GET /nothing"},
		{.raw = "DELETE /things/42"},        {.raw = "GET /things/42/"},    {.raw = "GET /later"},
	};
	run_calls(c, 6);
	ASSERT_EQ_INT(c[0].status, 200);
	ASSERT_CONTAINS(c[0].body, "\"id\":\"42\"");
	ASSERT_CONTAINS(c[0].body, "\"q\":\"a b c\"");
	ASSERT_EQ_INT(c[1].status, 200);
	ASSERT_CONTAINS(c[1].resp, "content-type: image/png");
	ASSERT_STREQ(c[1].body, "42");
	ASSERT_EQ_INT(c[2].status, 404);
	ASSERT_CONTAINS(c[2].body, "\"error\":");
	ASSERT_CONTAINS(c[2].body, "\"request_id\":");
	ASSERT_EQ_INT(c[3].status, 405);
	ASSERT_EQ_INT(c[4].status, 200); /* a trailing slash is not significant */
	ASSERT_EQ_INT(c[5].status, 200);
	ASSERT_CONTAINS(c[5].body, "later");
	ASSERT_CONTAINS(c[0].resp, "x-request-id: ");
	stop();
}

TEST(roles_and_body_cap)
{
	start();
	struct call c[] = {
		{.raw = "GET /secret"},
		{.raw = "GET /secret\r\nAuthorization: Bearer nope"},
		{.raw = "GET /secret\r\nAuthorization: Bearer vw"},
		{.raw = "POST /things\r\nAuthorization: Bearer vw", .body_len = 10},
		{.raw = "POST /things\r\nAuthorization: Bearer op", .body_len = 10},
		{.raw = "POST /things\r\nAuthorization: Bearer op", .body_len = 1500},
		{.raw = "GET /slow-auth\r\nAuthorization: Bearer slow"},
		{.raw = "GET /slow-auth\r\nAuthorization: Bearer op"},
		{.raw = "GET /things/1\r\nX-Request-Id: my-trace-1"},
	};
	run_calls(c, 9);
	ASSERT_EQ_INT(c[0].status, 401);
	ASSERT_CONTAINS(c[0].resp, "WWW-Authenticate: Bearer");
	ASSERT_EQ_INT(c[1].status, 401);
	ASSERT_EQ_INT(c[2].status, 200);
	ASSERT_EQ_INT(c[3].status, 403);
	ASSERT_CONTAINS(c[3].body, "\"role\":\"viewer\"");
	ASSERT_EQ_INT(c[4].status, 201);
	ASSERT_CONTAINS(c[4].body, "\"len\":10");
	ASSERT_EQ_INT(c[5].status, 413);
	ASSERT_CONTAINS(c[5].body, "\"limit\":1000");
	ASSERT_EQ_INT(c[6].status, 200); /* role decided after a deferred look-up */
	ASSERT_CONTAINS(c[6].body, "\"role\":2");
	ASSERT_EQ_INT(c[7].status, 403);
	ASSERT_CONTAINS(c[8].resp, "x-request-id: my-trace-1");
	struct call m[] = {{.raw = "GET /metrics"}};
	run_calls(m, 1);
	ASSERT_CONTAINS(m[0].body, "atelier_http_requests_total{method=\"POST\",route=\"/things\",status=\"413\"} 1");
	ASSERT_CONTAINS(m[0].body, "atelier_http_requests_total{method=\"GET\",route=\"/secret\",status=\"401\"} 2");
	stop();
}

/* Walk a document: doc / k1 / k2 ... (NULL-terminated). */
static json_t *at(json_t *j, ...)
{
	va_list ap;
	va_start(ap, j);
	for (const char *k; j && (k = va_arg(ap, const char *)) != NULL;)
		j = json_is_array(j) ? json_array_get(j, (size_t)strtoul(k, NULL, 10)) : json_object_get(j, k);
	va_end(ap);
	return j;
}

TEST(openapi_lists_routes)
{
	start();
	static const struct http_tag tags[] = {{"things", "the things"}, {"ops", "operations"}};
	json_t *doc = http_server_openapi(srv, "t", tags, 2);
	json_t *paths = json_object_get(doc, "paths");
	ASSERT_STREQ(json_string_value(at(paths, "/things/{id}", "get", "summary", NULL)), "echo");
	ASSERT_STREQ(json_string_value(at(doc, "tags", "1", "name", NULL)), "ops");
	ASSERT_STREQ(json_string_value(at(doc, "components", "securitySchemes", "bearer", "scheme", NULL)), "bearer");
	ASSERT(at(doc, "security", "0", "bearer", NULL) != NULL);
	/* operationIds: given, or derived from method and pattern */
	ASSERT_STREQ(json_string_value(at(paths, "/things/{id}.png", "get", "operationId", NULL)), "getThingImage");
	ASSERT_STREQ(json_string_value(at(paths, "/things/{id}", "get", "operationId", NULL)), "getThingsId");
	ASSERT_STREQ(json_string_value(at(paths, "/slow-auth", "get", "operationId", NULL)), "getSlowAuth");
	/* a path parameter (typed as given), then the query parameter with its description lifted */
	json_t *ps = at(paths, "/things/{id}", "get", "parameters", NULL);
	ASSERT_EQ_INT((int)json_array_size(ps), 2);
	ASSERT_STREQ(json_string_value(at(ps, "0", "in", NULL)), "path");
	ASSERT(json_is_true(at(ps, "0", "required", NULL)));
	ASSERT_STREQ(json_string_value(at(ps, "0", "schema", "type", NULL)), "string"); /* not listed: string */
	ASSERT_STREQ(json_string_value(at(ps, "1", "in", NULL)), "query");
	ASSERT_STREQ(json_string_value(at(ps, "1", "description", NULL)), "echoed");
	ASSERT(at(ps, "1", "schema", "description", NULL) == NULL);
	ASSERT_STREQ(json_string_value(at(paths, "/things/{id}.png", "get", "parameters", "0", "schema", "type", NULL)),
		     "integer");
	/* public routes lift the bearer requirement; the others inherit it */
	ASSERT_EQ_INT((int)json_array_size(at(paths, "/later", "get", "security", NULL)), 0);
	ASSERT(at(paths, "/later", "get", "security", NULL) != NULL);
	ASSERT(at(paths, "/secret", "get", "security", NULL) == NULL);
	ASSERT_STREQ(json_string_value(at(paths, "/secret", "get", "x-roles", "1", NULL)), "operator");
	ASSERT_STREQ(json_string_value(at(paths, "/secret", "get", "description", NULL)), "Roles: viewer, operator");
	/* bodies and replies: schemas wrapped per content type, the success status, errors shared */
	json_t *post = at(paths, "/things", "post", NULL);
	ASSERT_STREQ(json_string_value(
			     at(post, "requestBody", "content", "application/octet-stream", "schema", "format", NULL)),
		     "binary");
	ASSERT(at(post, "responses", "201", "description", NULL) != NULL);
	ASSERT(at(post, "responses", "200", NULL) == NULL);
	ASSERT_STREQ(json_string_value(
			     at(post, "responses", "202", "content", "application/json", "schema", "type", NULL)),
		     "object");
	ASSERT_STREQ(json_string_value(at(post, "responses", "4XX", "$ref", NULL)), "#/components/responses/Error");
	ASSERT(at(doc, "components", "schemas", "Error", "properties", "request_id", NULL) != NULL);
	ASSERT(at(paths, "/secret", "get", "responses", "200", "content", NULL) == NULL); /* no reply given */
	json_decref(doc);
	stop();
}

/* A JSON text that does not parse would only show as a broken document: the table is refused. */
TEST(openapi_bad_text_refused)
{
	static const struct http_route bad[][1] = {
		{{"GET", "/a", h_echo, ROLE_PUBLIC, "a", .reply = "{\"application/json\": {\"type\": }"}},
		{{"GET", "/a", h_echo, ROLE_PUBLIC, "a", .params = "[\"id\"]"}},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ASSERT_EQ_INT(uv_loop_init(&loop), 0);
		struct http_config cfg = {.port = 0};
		http_server_t *s = NULL;
		ASSERT_EQ_INT(http_server_new(&loop, &cfg, bad[i], 1, &s), AT_EINVAL);
		ASSERT(s == NULL);
		ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	}
}

/* The parser behind http_req_query, as the fuzz target drives it. */
TEST(query_parse_decodes_and_caps)
{
	char *names[4], *values[4];
	const char *q = "a=1&&=x&b&c=%41%4&d=+%2b";
	int n = http_query_parse(q, strlen(q), names, values, 4);
	ASSERT_EQ_INT(n, 4);
	ASSERT_STREQ(names[0], "a");
	ASSERT_STREQ(values[0], "1");
	ASSERT_STREQ(names[1], "b"); /* "=x" has no name: skipped */
	ASSERT_STREQ(values[1], "");
	ASSERT_STREQ(values[2], "A%4");
	ASSERT_STREQ(values[3], " +");
	for (int i = 0; i < n; i++) {
		free(names[i]);
		free(values[i]);
	}
	/* a pair past max is an error, not left out; nameless pairs do not count */
	ASSERT_EQ_INT(http_query_parse("x=1&y=2", 7, names, values, 1), AT_ERANGE);
	ASSERT_EQ_INT(http_query_parse("x=1&&=2", 7, names, values, 1), 1);
	ASSERT_STREQ(names[0], "x");
	free(names[0]);
	free(values[0]);
	ASSERT_EQ_INT(http_query_parse("", 0, names, values, 4), 0);
}

/* Ids are digits only, 1..INT64_MAX: no sign, space, NUL or overflow clamp. */
TEST(parse_id_is_strict)
{
	static const struct {
		const char *in;
		int rc;
		int64_t want;
	} cases[] = {
		{"5", 0, 5},
		{"05", 0, 5},
		{"9223372036854775807", 0, INT64_MAX},
		{"9223372036854775808", AT_EINVAL, 0},
		{"99999999999999999999", AT_EINVAL, 0},
		{"0", AT_EINVAL, 0},
		{"", AT_EINVAL, 0},
		{"+5", AT_EINVAL, 0},
		{"-5", AT_EINVAL, 0},
		{" 5", AT_EINVAL, 0},
		{"5 ", AT_EINVAL, 0},
		{"5\n", AT_EINVAL, 0},
		{"0x10", AT_EINVAL, 0},
		{"1e3", AT_EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t v = -1;
		int rc = http_parse_id(cases[i].in, &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].want))
			TEST_FAIL_("http_parse_id(\"%s\") = %d (%lld), want %d (%lld)", cases[i].in, rc, (long long)v,
				   cases[i].rc, (long long)cases[i].want);
	}
	int64_t v;
	ASSERT_EQ_INT(http_parse_id(NULL, &v), AT_EINVAL);
}

/* Sixteen query parameters reach the handler (the last one included); a
 * seventeenth is the client's 400 naming the cap, before the handler runs. */
TEST(seventeenth_query_param_is_an_error)
{
	start();
	char q16[256] = "GET /things/7?", q17[256];
	for (int i = 1; i < 16; i++)
		snprintf(q16 + strlen(q16), sizeof q16 - strlen(q16), "p%d=%d&", i, i);
	snprintf(q16 + strlen(q16), sizeof q16 - strlen(q16), "q=last");
	snprintf(q17, sizeof q17, "%s&p17=17", q16);
	struct call c[] = {{.raw = q16}, {.raw = q17}};
	run_calls(c, 2);
	ASSERT_EQ_INT(c[0].status, 200);
	ASSERT_CONTAINS(c[0].body, "\"q\":\"last\"");
	ASSERT_EQ_INT(c[1].status, 400);
	ASSERT_CONTAINS(c[1].body, "at most 16");
	ASSERT_CONTAINS(c[1].body, "\"code\":\"RANGE\"");
	ASSERT_CONTAINS(c[1].body, "\"limit\":16");
	stop();
}

/* A ninth extra header is an error to its caller, and the reply that would
 * have gone out without it is a 500 instead. */
TEST(ninth_header_is_an_error)
{
	start();
	struct call c[] = {{.raw = "GET /headers"}};
	run_calls(c, 1);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ_INT(add_header_rc[i], 0);
	ASSERT_EQ_INT(add_header_rc[8], AT_ERANGE);
	ASSERT_EQ_INT(c[0].status, 500);
	ASSERT_CONTAINS(c[0].body, "a response header did not fit");
	ASSERT(strstr(c[0].resp, "x-a: v") == NULL);
	ASSERT(strstr(c[0].body, "there") == NULL);
	stop();
}

/* Callers do not check each header (the error is sticky, http.h): a stream
 * started after a lost header is refused and the client gets the 500. */
TEST(lost_header_refuses_the_stream)
{
	start();
	stream_started = -1;
	struct call c[] = {{.raw = "GET /stream-headers"}};
	run_calls(c, 1);
	ASSERT_EQ_INT(stream_started, 0);
	ASSERT_EQ_INT(c[0].status, 500);
	ASSERT_CONTAINS(c[0].body, "a response header did not fit");
	ASSERT(strstr(c[0].resp, "content-range") == NULL);
	stop();
}

/* Reads each handle's fields from this (instrumented) file: under ASan a
 * handle left inside freed memory is a heap-use-after-free here. */
static void visit_handle(uv_handle_t *h, void *arg) { *(int *)arg += h->type == UV_TCP && uv_is_closing(h); }

/* A failed listen closes the listener, which lives inside the server: the
 * server may be freed only in that close callback, not before the loop runs. */
TEST(listen_failure_frees_after_close)
{
	/* Without ASan, freed memory is overwritten, so libuv trips over a
	 * handle that was freed under it (glibc; tcache-sized blocks excepted). */
	mallopt(M_PERTURB, 0xa5);
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	socklen_t alen = sizeof a;
	ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	ASSERT_EQ_INT(listen(fd, 1), 0);
	ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	struct http_config cfg = {.port = ntohs(a.sin_port)};
	http_server_t *s = NULL;
	ASSERT_EQ_INT(http_server_new(&loop, &cfg, routes, sizeof routes / sizeof routes[0], &s), AT_EIO);
	ASSERT(s == NULL);
	/* The listener's close is still pending: it completes on this loop. */
	int closing = 0;
	uv_walk(&loop, visit_handle, &closing);
	ASSERT_EQ_INT(closing, 1);
	ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	close(fd);
	mallopt(M_PERTURB, 0);
}

RUN_TESTS(routes_params_and_errors, roles_and_body_cap, openapi_lists_routes, openapi_bad_text_refused,
	  query_parse_decodes_and_caps, parse_id_is_strict, seventeenth_query_param_is_an_error,
	  ninth_header_is_an_error, lost_header_refuses_the_stream, listen_failure_frees_after_close)
