/* Unit tests for lib/http_client.c against a real loopback server (lib/http.c
 * on a libuv loop, main thread) with the blocking client on a second thread:
 * header look-ups, request bodies and forms, the body cap (buffer and file),
 * a download resumed against a server that ignores Range, an error answer
 * that must not land in the file, a refused connection, the stop flag on a
 * long-poll, and the total timeout. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"
#include "http_client.h"
#include "test.h"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FILE_LEN 5000

static uv_loop_t loop;
static http_server_t *srv;
static int port;
static char base[64];
static int stop_flag;
static uv_timer_t *slow_reply; /* a deferred reply not yet sent */

/* ---- server ---- */

static void h_hello(http_req_t *req)
{
	http_req_add_header(req, "X-Content-Sha256", SHA);
	http_req_add_header(req, "X-Twice", "first");
	http_req_add_header(req, "X-Twice", "second");
	http_reply_json(req, 200, json_pack("{ss}", "hello", "world"));
}

static void h_echo(http_req_t *req)
{
	size_t n = 0, al = 0;
	const uint8_t *b = http_req_body(req, &n);
	const char *auth = http_req_header(req, "authorization", &al);
	http_reply_json(req, 200,
			json_pack("{ss,sI,ss#,ss#}", "method", http_req_method(req), "len", (json_int_t)n, "body",
				  b ? (const char *)b : "", b ? (int)n : 0, "auth", auth ? auth : "",
				  auth ? (int)al : 0));
}

static void h_type(http_req_t *req)
{
	size_t tl = 0;
	const char *ct = http_req_header(req, "content-type", &tl);
	http_reply_bytes(req, 200, "text/plain", ct ? ct : "(none)", ct ? tl : 6);
}

static char file_bytes[FILE_LEN];

/* Like a server without Range support: always the whole file, 200. */
static void h_file(http_req_t *req) { http_reply_bytes(req, 200, "application/octet-stream", file_bytes, FILE_LEN); }

static void h_missing(http_req_t *req) { http_reply_json(req, 404, json_pack("{ss}", "error", "no such artifact")); }

static void later_reply(uv_timer_t *t)
{
	http_req_t *req = t->data;
	http_reply_json(req, 200, json_pack("{ss}", "late", "yes"));
	slow_reply = NULL;
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void raise_stop(uv_timer_t *t)
{
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static uv_timer_t *after(uint64_t ms, uv_timer_cb cb, void *data)
{
	uv_timer_t *t = malloc(sizeof *t);
	uv_timer_init(&loop, t);
	t->data = data;
	uv_timer_start(t, cb, ms, 0);
	return t;
}

/* A long-poll that answers after 4 s; ?stop=1 also raises the client's
 * stop flag 100 ms after the request arrived. */
static void h_slow(http_req_t *req)
{
	slow_reply = after(4000, later_reply, req);
	const char *s = http_req_query(req, "stop");
	if (s && !strcmp(s, "1"))
		after(100, raise_stop, NULL);
}

/* Two replicas behind one server: /a/busy is one that answers 503, /b/busy one that works. */
static void h_busy_a(http_req_t *req) { http_reply_json(req, 503, json_pack("{ss}", "error", "database away")); }
static void h_busy_b(http_req_t *req) { http_reply_bytes(req, 200, "text/plain", "b", 1); }

static const struct http_route routes[] = {
	{"POST", "/a/busy", h_busy_a, ROLE_PUBLIC, "503", .tag = "client"},
	{"POST", "/b/busy", h_busy_b, ROLE_PUBLIC, "200", .tag = "client"},
	{"GET", "/hello", h_hello, ROLE_PUBLIC, "headers", .tag = "client"},
	{"POST", "/echo", h_echo, ROLE_PUBLIC, "echo", .tag = "client"},
	{"PUT", "/echo", h_echo, ROLE_PUBLIC, "echo", .tag = "client"},
	{"POST", "/type", h_type, ROLE_PUBLIC, "content type", .tag = "client"},
	{"GET", "/file", h_file, ROLE_PUBLIC, "whole file", .tag = "client"},
	{"GET", "/missing", h_missing, ROLE_PUBLIC, "404", .tag = "client"},
	{"GET", "/slow", h_slow, ROLE_PUBLIC, "long-poll", .tag = "client"},
};

/* ---- the client thread ---- */

static void (*client_fn)(void);
static volatile int client_done;
static char client_fail[512]; /* an assertion that failed on the client thread */

static void *client_main(void *arg)
{
	client_fn();
	__atomic_store_n(&client_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void wakeup(uv_timer_t *t)
{
	if (!__atomic_load_n(&client_done, __ATOMIC_ACQUIRE))
		return;
	/* the client gave up on the long-poll: answer it now, to nobody */
	if (slow_reply) {
		uv_timer_stop(slow_reply);
		later_reply(slow_reply);
	}
	uv_stop(&loop);
}

static void setup(void)
{
	static int done;
	if (done++)
		return;
	ASSERT_EQ_INT(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
	for (int i = 0; i < FILE_LEN; i++)
		file_bytes[i] = (char)('a' + i % 26);
}

static void start(void)
{
	setup();
	ASSERT_EQ_INT(uv_loop_init(&loop), 0);
	struct http_config cfg = {.port = 0, .max_body = 1 << 20};
	ASSERT_EQ_INT(http_server_new(&loop, &cfg, routes, sizeof routes / sizeof routes[0], &srv), 0);
	port = http_server_port(srv);
	ASSERT_OP_INT(port, >, 0);
	snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
}

static int closed;
static void on_closed(void *arg) { closed = 1; }

/* Runs fn on a thread while the loop serves, then closes the server. */
static void serve_while(void (*fn)(void))
{
	start();
	client_fn = fn;
	client_done = 0;
	client_fail[0] = 0;
	stop_flag = 0;
	pthread_t th;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, wakeup, 5, 5);
	pthread_create(&th, NULL, client_main, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	uv_close((uv_handle_t *)&t, NULL);
	closed = 0;
	http_server_close(srv, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_EQ_INT(closed, 1);
	ASSERT_EQ_INT(uv_loop_close(&loop), 0);
	if (client_fail[0])
		TEST_FAIL_("%s", client_fail);
}

/* The harness's asserts longjmp, which must not cross threads: the client
 * side records its first failure and the main thread reports it. */
#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond) && !client_fail[0])                                                            \
			snprintf(client_fail, sizeof client_fail, "%s:%d: %s", __FILE__, __LINE__, #cond); \
	} while (0)
#define CHECK_EQ(a, b)                                                                                                 \
	do {                                                                                                           \
		long long a_ = (long long)(a), b_ = (long long)(b);                                                    \
		if (a_ != b_ && !client_fail[0])                                                                       \
			snprintf(client_fail, sizeof client_fail, "%s:%d: %s == %s: %lld != %lld", __FILE__, __LINE__, \
				 #a, #b, a_, b_);                                                                      \
	} while (0)
#define CHECK_STR(a, b)                                                                                        \
	do {                                                                                                   \
		const char *a_ = (a), *b_ = (b);                                                               \
		if ((!a_ || strcmp(a_, b_) != 0) && !client_fail[0])                                           \
			snprintf(client_fail, sizeof client_fail, "%s:%d: %s == \"%s\": got \"%s\"", __FILE__, \
				 __LINE__, #a, b_, a_ ? a_ : "(null)");                                        \
	} while (0)

static struct http_client cl;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests ---- */

static void headers_client(void)
{
	http_client_init(&cl, base, "tok", NULL, "atelier-test/1");
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/hello"}, &r), 0);
	CHECK_EQ(r.status, 200);
	CHECK(r.body.data && strstr(r.body.data, "\"hello\":\"world\""));
	CHECK_STR(http_client_header(&r, "x-content-sha256"), SHA);
	CHECK_STR(http_client_header(&r, "X-CONTENT-SHA256"), SHA);
	CHECK_STR(http_client_header(&r, "x-twice"), "second");
	CHECK_STR(http_client_header(&r, "content-type"), "application/json");
	CHECK(http_client_header(&r, "x-absent") == NULL);
	/* a second call on the same response replaces the answer and its headers */
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/missing"}, &r), 0);
	CHECK_EQ(r.status, 404);
	CHECK(http_client_header(&r, "x-content-sha256") == NULL);
	http_client_resp_free(&r);
	CHECK(http_client_header(&r, "content-type") == NULL);
	http_client_resp_free(&r); /* twice: a no-op */
}

TEST(headers_are_looked_up_by_name) { serve_while(headers_client); }

static void bodies_client(void)
{
	http_client_init(&cl, base, "tok", NULL, NULL);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	const char *json = "{\"a\":1}";
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.path = "/echo",
							    .content_type = "application/json",
							    .body = json,
							    .len = strlen(json)},
				  &r),
		 0);
	CHECK_EQ(r.status, 200);
	CHECK(r.body.data && strstr(r.body.data, "\"method\":\"POST\""));
	CHECK(r.body.data && strstr(r.body.data, "\"body\":\"{\\\"a\\\":1}\""));
	CHECK(r.body.data && strstr(r.body.data, "\"auth\":\"Bearer tok\""));
	/* POST without a body: Content-Length 0, and no form content type */
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.method = "POST", .path = "/echo"}, &r), 0);
	CHECK_EQ(r.status, 200);
	CHECK(r.body.data && strstr(r.body.data, "\"len\":0"));
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.method = "POST", .path = "/type"}, &r), 0);
	CHECK_STR(r.body.data, "(none)");
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.method = "PUT", .path = "/echo", .body = "xyz", .len = 3},
				  &r),
		 0);
	CHECK(r.body.data && strstr(r.body.data, "\"method\":\"PUT\""));
	CHECK(r.body.data && strstr(r.body.data, "\"len\":3"));
	http_client_resp_free(&r);
}

TEST(request_bodies_and_methods) { serve_while(bodies_client); }

static curl_mime *one_field(CURL *h, void *arg)
{
	curl_mime *m = curl_mime_init(h);
	curl_mimepart *p = curl_mime_addpart(m);
	curl_mime_name(p, "field");
	curl_mime_data(p, arg, CURL_ZERO_TERMINATED);
	return m;
}

static void form_client(void)
{
	http_client_init(&cl, base, NULL, NULL, NULL);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/type", .form = one_field, .form_arg = "v"},
				  &r),
		 0);
	CHECK_EQ(r.status, 200);
	CHECK(r.body.data && strncmp(r.body.data, "multipart/form-data; boundary=", 30) == 0);
	http_client_resp_free(&r);
}

TEST(multipart_form) { serve_while(form_client); }

static void cap_client(void)
{
	http_client_init(&cl, base, NULL, NULL, NULL);
	struct http_client_resp r;
	http_client_resp_init(&r, 1000);
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/file"}, &r), AT_ETOOBIG);
	CHECK_EQ(r.status, 0);
	CHECK(strstr(r.error, "GET http://127.0.0.1:") && strstr(r.error, "/file: answer larger than 1000 bytes"));
	http_client_resp_free(&r);
	/* into a file, capped below the file's size */
	FILE *f = tmpfile();
	http_client_resp_init(&r, 0);
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/file", .file = f, .max_file = FILE_LEN - 1},
				  &r),
		 AT_ETOOBIG);
	CHECK(strstr(r.error, "answer larger than 4999 bytes"));
	fflush(f);
	CHECK(ftell(f) < FILE_LEN);
	fclose(f);
	http_client_resp_free(&r);
}

TEST(body_over_the_cap_is_too_big) { serve_while(cap_client); }

static void resume_client(void)
{
	http_client_init(&cl, base, NULL, NULL, NULL);
	char path[] = "/tmp/atelier-http-client-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	/* 100 bytes from an earlier, broken transfer */
	CHECK_EQ(write(fd, file_bytes, 100), 100);
	close(fd);
	FILE *f = fopen(path, "ab");
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	/* The server ignores Range and sends all 5000 bytes with 200: the file
	 * starts over, and the cap counts the file, not the bytes after 100. */
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.path = "/file",
							    .file = f,
							    .range_from = 100,
							    .max_file = FILE_LEN},
				  &r),
		 0);
	CHECK_EQ(r.status, 200);
	fclose(f);
	http_client_resp_free(&r);
	struct at_buf got;
	at_buf_init(&got, 0);
	CHECK_EQ(at_buf_add_file(&got, path), 0);
	CHECK_EQ(got.len, FILE_LEN);
	CHECK(got.len == FILE_LEN && memcmp(got.data, file_bytes, FILE_LEN) == 0);
	at_buf_free(&got);

	/* An error answer goes to r.body for the log, not into the file, and
	 * one longer than r.body's cap is cut there, not AT_ETOOBIG (which
	 * the puller reads as "the artifact is too big"). */
	f = fopen(path, "ab");
	http_client_resp_init(&r, 16);
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.path = "/missing",
							    .file = f,
							    .range_from = FILE_LEN,
							    .max_file = 2 * FILE_LEN},
				  &r),
		 0);
	CHECK_EQ(r.status, 404);
	CHECK_EQ(r.body.len, 16);
	CHECK_STR(r.body.data, "{\"error\":\"no suc");
	fclose(f);
	http_client_resp_free(&r);
	at_buf_init(&got, 0);
	CHECK_EQ(at_buf_add_file(&got, path), 0);
	CHECK_EQ(got.len, FILE_LEN);
	at_buf_free(&got);
	unlink(path);
}

TEST(download_restarts_when_range_is_ignored) { serve_while(resume_client); }

static void stop_client(void)
{
	http_client_init(&cl, base, NULL, &stop_flag, NULL);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	double t0 = now_s();
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/slow?stop=1", .timeout_s = 30}, &r),
		 AT_ECANCELLED);
	CHECK(now_s() - t0 < 3.0); /* the answer was 4 s away */
	CHECK_EQ(r.status, 0);
	http_client_resp_free(&r);
}

TEST(stop_flag_ends_a_long_poll) { serve_while(stop_client); }

static void timeout_client(void)
{
	http_client_init(&cl, base, NULL, &stop_flag, NULL);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	double t0 = now_s();
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/slow", .timeout_s = 1}, &r), AT_ETIMEOUT);
	CHECK(now_s() - t0 < 3.0);
	CHECK(strstr(r.error, "/slow: "));
	http_client_resp_free(&r);
}

TEST(total_timeout) { serve_while(timeout_client); }

/* A port with nothing behind it: bound, never listened on, then closed. */
static int dead_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t len = sizeof a;
	ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

TEST(connection_refused_is_unavailable)
{
	setup();
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", dead_port());
	struct http_client c;
	http_client_init(&c, url, NULL, NULL, NULL);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	ASSERT_EQ_INT(http_client_call(&c, &(struct http_client_req){.path = "/v1/models"}, &r), AT_EUNAVAILABLE);
	ASSERT_EQ_INT(r.status, 0);
	/* says which call, where, and why */
	char want[128];
	snprintf(want, sizeof want, "GET %s/v1/models: ", url);
	ASSERT_CONTAINS(r.error, want);
	ASSERT_CONTAINS(r.error, "onnect"); /* libcurl's "Couldn't connect" / "Failed to connect" */
	ASSERT(http_client_header(&r, "content-type") == NULL);
	http_client_resp_free(&r);
	/* a URL past the limit never reaches libcurl */
	char longpath[3000];
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = 0;
	http_client_resp_init(&r, 0);
	ASSERT_EQ_INT(http_client_call(&c, &(struct http_client_req){.path = longpath}, &r), AT_EINVAL);
	ASSERT_CONTAINS(r.error, "URL too long");
	http_client_resp_free(&r);
}

/* A port with nothing behind it (below). */
static int dead_port(void);

/* --atelierd with several URLs: the dead one is passed over within the call
 * (nothing was sent), the live one stays current, a 503 moves on, and when
 * all fail the next call starts at the next one. */
static void failover_client(void)
{
	char list[256], cur[128];
	int dead = dead_port(), dead2 = dead_port();
	/* blanks and trailing slashes around entries are trimmed */
	snprintf(list, sizeof list, "http://127.0.0.1:%d , %s/", dead, base);
	http_client_init(&cl, list, NULL, NULL, NULL);
	CHECK_EQ(cl.nbases, 2);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/hello"}, &r), 0);
	CHECK_EQ(r.status, 200);
	CHECK_EQ(cl.failovers, 1);
	http_client_current(&cl, cur, sizeof cur);
	CHECK_STR(cur, base);
	/* sticky: the next call goes straight to the live one */
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.method = "POST", .path = "/echo", .body = "x", .len = 1},
				  &r),
		 0);
	CHECK_EQ(r.status, 200);
	CHECK_EQ(cl.failovers, 1);
	/* a POST to a refused connection went nowhere: sent on at once */
	http_client_init(&cl, list, NULL, NULL, NULL);
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.method = "POST", .path = "/echo", .body = "y", .len = 1},
				  &r),
		 0);
	CHECK_EQ(r.status, 200);
	CHECK(strstr(r.body.data, "\"body\":\"y\""));
	/* a 503 moves on to the next replica */
	snprintf(list, sizeof list, "%s/a,%s/b", base, base);
	http_client_init(&cl, list, NULL, NULL, NULL);
	CHECK_EQ(http_client_call(&cl,
				  &(struct http_client_req){.method = "POST", .path = "/busy", .body = "z", .len = 1},
				  &r),
		 0);
	CHECK_EQ(r.status, 200);
	http_client_current(&cl, cur, sizeof cur);
	CHECK(strlen(cur) > 2 && strcmp(cur + strlen(cur) - 2, "/b") == 0);
	/* all unreachable: the last failure; the next call starts one further on */
	snprintf(list, sizeof list, "http://127.0.0.1:%d,http://127.0.0.1:%d", dead, dead2);
	http_client_init(&cl, list, NULL, NULL, NULL);
	CHECK_EQ(http_client_call(&cl, &(struct http_client_req){.path = "/hello"}, &r), AT_EUNAVAILABLE);
	CHECK_EQ(cl.cur, 1);
	CHECK_EQ(cl.failovers, 2);
	char want[64];
	snprintf(want, sizeof want, "127.0.0.1:%d/hello", dead2);
	CHECK(strstr(r.error, want));
	http_client_resp_free(&r);
}

TEST(several_bases_fail_over) { serve_while(failover_client); }

TEST(base_lists_are_checked)
{
	char err[256];
	ASSERT_EQ_INT(http_client_check_base("http://a:1", err, sizeof err), 0);
	ASSERT_EQ_INT(http_client_check_base("http://a:1/, https://b:2 ,http://c", err, sizeof err), 0);
	ASSERT_EQ_INT(http_client_check_base("", err, sizeof err), AT_EINVAL);
	ASSERT_EQ_INT(http_client_check_base("http://a:1,,http://b", err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "URL 2");
	ASSERT_EQ_INT(http_client_check_base("http://a:1,ftp://b", err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "ftp://b");
	ASSERT_EQ_INT(http_client_check_base("http://a\"b", err, sizeof err), AT_EINVAL);
	ASSERT_EQ_INT(http_client_check_base("http://a b", err, sizeof err), AT_EINVAL);
	ASSERT_EQ_INT(http_client_check_base("http://1,http://2,http://3,http://4,http://5,http://6,http://7,http://8",
					     err, sizeof err),
		      0);
	ASSERT_EQ_INT(http_client_check_base(
			      "http://1,http://2,http://3,http://4,http://5,http://6,http://7,http://8,http://9", err,
			      sizeof err),
		      AT_EINVAL);
	ASSERT_CONTAINS(err, "at most 8");
	/* one URL keeps working as it did */
	struct http_client c;
	http_client_init(&c, "http://a:1//", NULL, NULL, NULL);
	char cur[64];
	http_client_current(&c, cur, sizeof cur);
	ASSERT_STREQ(cur, "http://a:1");
}

RUN_TESTS(headers_are_looked_up_by_name, request_bodies_and_methods, multipart_form, body_over_the_cap_is_too_big,
	  download_restarts_when_range_is_ignored, stop_flag_ends_a_long_poll, total_timeout,
	  connection_refused_is_unavailable, several_bases_fail_over, base_lists_are_checked)
