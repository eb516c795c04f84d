/* Unit tests for lib/artifact_s3.c against a real S3-protocol server: s3rver
 * behind tests/s3/front.js, which checks every SigV4 signature with the AWS
 * SDK's signer and injects faults when asked (503s, stalls, a flipped byte).
 * The server is started here (tests/s3/start.sh under ATELIER_ROOT or the
 * current folder) and killed at exit. */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "fsutil.h"
#include "test.h"

static pid_t server_pid;
static char endpoint[128];
static char dir[256];

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
	if (*dir) {
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", dir);
	}
}

/* Start the server once per process; SKIP when node is missing. */
static void need_server(void)
{
	if (*endpoint)
		return;
	if (system("command -v node >/dev/null 2>&1") != 0)
		SKIP("node is not installed (Debian package nodejs)");
	const char *root = getenv("ATELIER_ROOT") ? getenv("ATELIER_ROOT") : ".";
	char script[512];
	snprintf(script, sizeof script, "%s/tests/s3/start.sh", root);
	if (access(script, X_OK) != 0)
		SKIP("%s not found", script);
	snprintf(dir, sizeof dir, "/tmp/atelier-s3-test-%d", (int)getpid());
	int fds[2];
	ASSERT_EQ_INT(pipe(fds), 0);
	server_pid = fork();
	ASSERT(server_pid >= 0);
	if (server_pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl("/bin/sh", "sh", script, "127.0.0.1", "0", dir, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	atexit(stop_server);
	FILE *f = fdopen(fds[0], "r");
	char line[256];
	while (fgets(line, sizeof line, f)) {
		const char *p = strstr(line, "s3: ready ");
		if (p) {
			snprintf(endpoint, sizeof endpoint, "%s", p + 10);
			endpoint[strcspn(endpoint, "\r\n")] = 0;
			break;
		}
	}
	fclose(f); /* the server's later output goes to a closed pipe: it prints nothing more */
	ASSERT(*endpoint);
}

/* The settings every test starts from; a test changes what it checks. */
static struct artifact_store *open_s3(const char *secret)
{
	need_server();
	setenv("ATELIER_S3_ENDPOINT", endpoint, 1);
	setenv("ATELIER_S3_PATH_STYLE", "true", 1);
	setenv("ATELIER_S3_REGION", "us-east-1", 1);
	setenv("AWS_ACCESS_KEY_ID", "atelier", 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
	setenv("ATELIER_S3_MULTIPART_THRESHOLD", "5MiB", 1);
	setenv("ATELIER_S3_PART_SIZE", "5MiB", 1);
	setenv("ATELIER_S3_BACKOFF", "0.01", 1);
	setenv("ATELIER_S3_RETRIES", "3", 1);
	setenv("ATELIER_S3_TIMEOUT", "2", 1);
	struct artifact_store *s = NULL;
	ASSERT_EQ_INT(artifact_store_open("s3://atelier/t/unit", &s), 0);
	return s;
}

static size_t to_buf(char *p, size_t size, size_t n, void *arg)
{
	return at_buf_add(arg, p, size * n) < 0 ? 0 : size * n;
}

/* A plain (unsigned) request; returns the status, the body in out. */
static long plain(const char *method, const char *url, const char *range, struct at_buf *out)
{
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	if (range)
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	long status = 0;
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	return status;
}

static void front(const char *what)
{
	char url[300];
	struct at_buf b;
	at_buf_init(&b, 4096);
	snprintf(url, sizeof url, "%s/__front/%s", endpoint, what);
	ASSERT_EQ_INT(plain("POST", url, NULL, &b), 204);
	at_buf_free(&b);
}

/* One counter of the front's /__front/stats. */
static long stat_of(const char *name)
{
	char url[300], key[64];
	struct at_buf b;
	at_buf_init(&b, 4096);
	snprintf(url, sizeof url, "%s/__front/stats", endpoint);
	ASSERT_EQ_INT(plain("GET", url, NULL, &b), 200);
	snprintf(key, sizeof key, "\"%s\":", name);
	const char *p = strstr(b.data, key);
	long v = p ? strtol(p + strlen(key), NULL, 10) : -1;
	at_buf_free(&b);
	return v;
}

static int collect(const void *data, size_t len, void *arg) { return at_buf_add(arg, data, len); }

struct found {
	const char *want;
	int seen;
	uint64_t size;
	int64_t mtime;
	int total;
};

static int on_item(const struct artifact_info *in, void *arg)
{
	struct found *f = arg;
	f->total++;
	if (strcmp(in->sha, f->want) == 0) {
		f->seen++;
		f->size = in->size;
		f->mtime = in->mtime;
	}
	return 0;
}

static void write_random(const char *path, size_t len)
{
	FILE *f = fopen(path, "wb");
	ASSERT(f);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ASSERT_EQ_INT(fwrite(&x, 1, len - i < 8 ? len - i : 8, f), len - i < 8 ? len - i : 8);
	}
	ASSERT_EQ_INT(fclose(f), 0);
}

TEST(put_head_get_list_delete)
{
	struct artifact_store *s = open_s3("atelier-secret");
	front("reset");
	char sha[65], sha2[65], path[4096], uri[4096];
	ASSERT_EQ_INT(artifact_put_bytes(s, "abc", 3, sha), 0);
	ASSERT_STREQ(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	long puts = stat_of("PUT");
	ASSERT_EQ_INT(artifact_put_bytes(s, "abc", 3, sha2), 0); /* again: a HEAD, no PUT */
	ASSERT_EQ_INT(stat_of("PUT"), puts);
	uint64_t size = 0;
	ASSERT_EQ_INT(artifact_stat(s, sha, &size), 0);
	ASSERT_EQ_INT(size, 3);
	ASSERT(artifact_exists(s, sha));
	ASSERT(!artifact_store_is_local(s));
	ASSERT_EQ_INT(artifact_path(s, sha, path, sizeof path), AT_EUNSUPPORTED);
	ASSERT_EQ_INT(artifact_uri(s, sha, uri, sizeof uri), 0);
	ASSERT_STREQ(uri,
		     "s3://atelier/t/unit/sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ASSERT_STREQ(artifact_store_uri(s), "s3://atelier/t/unit");

	char dst[300];
	snprintf(dst, sizeof dst, "%s-get", dir);
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), 0);
	struct at_buf b;
	at_buf_init(&b, 1 << 20);
	ASSERT_EQ_INT(at_buf_add_file(&b, dst), 0);
	ASSERT_EQ_INT(b.len, 3);
	ASSERT(memcmp(b.data, "abc", 3) == 0);
	unlink(dst);

	struct found f = {.want = sha};
	ASSERT_EQ_INT(artifact_list(s, on_item, &f), 0);
	ASSERT_EQ_INT(f.seen, 1);
	ASSERT_EQ_INT(f.size, 3);
	ASSERT_OP_INT(llabs((long long)(f.mtime - time(NULL))), <, 120);

	ASSERT_EQ_INT(artifact_delete(s, sha), 0);
	ASSERT(!artifact_exists(s, sha));
	ASSERT_EQ_INT(artifact_stat(s, sha, &size), AT_ENOTFOUND);
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), AT_ENOTFOUND);
	ASSERT_EQ_INT(access(dst, F_OK), -1);
	ASSERT_EQ_INT(artifact_delete(s, sha), 0); /* absent: fine */
	/* every request of this test was signed, and verified by the front */
	ASSERT_EQ_INT(stat_of("rejected"), 0);
	ASSERT_OP_INT(stat_of("verified"), >=, 8);
	at_buf_free(&b);
	artifact_store_close(s);
}

TEST(list_pages_past_one_answer)
{
	/* s3rver pages at 1000 keys like S3: more than that exercises the
	 * continuation token (and its encoding in the signed query) */
	struct artifact_store *s = open_s3("atelier-secret");
	char sha[65], first[65] = "";
	for (int i = 0; i < 1003; i++) {
		char v[32];
		int n = snprintf(v, sizeof v, "page-%d", i);
		ASSERT_EQ_INT(artifact_put_bytes(s, v, (size_t)n, sha), 0);
		if (i == 0)
			memcpy(first, sha, 65);
	}
	struct found f = {.want = first};
	ASSERT_EQ_INT(artifact_list(s, on_item, &f), 0);
	ASSERT_EQ_INT(f.seen, 1);
	ASSERT_OP_INT(f.total, >=, 1003);
	artifact_store_close(s);
}

TEST(multipart_and_range)
{
	struct artifact_store *s = open_s3("atelier-secret");
	front("reset");
	char src[300], dst[300], sha[65], want[65];
	snprintf(src, sizeof src, "%s-big", dir);
	snprintf(dst, sizeof dst, "%s-big-got", dir);
	size_t len = 12 * 1024 * 1024 + 123; /* three parts of 5 MiB, the last short */
	write_random(src, len);
	uint64_t size = 0;
	ASSERT_EQ_INT(at_file_sha256(src, want, NULL), 0);
	ASSERT_EQ_INT(artifact_put_file(s, src, sha, &size), 0);
	ASSERT_STREQ(sha, want);
	ASSERT_EQ_INT(size, len);
	ASSERT_EQ_INT(stat_of("POST"), 2); /* create, complete */
	ASSERT_EQ_INT(stat_of("PUT"), 3);  /* the parts */
	ASSERT_EQ_INT(artifact_stat(s, sha, &size), 0);
	ASSERT_EQ_INT(size, len);
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), 0);
	char got[65];
	ASSERT_EQ_INT(at_file_sha256(dst, got, NULL), 0);
	ASSERT_STREQ(got, want);

	/* a range across the first part boundary, streamed */
	struct at_buf whole, part;
	at_buf_init(&whole, len + 1);
	at_buf_init(&part, 1 << 20);
	ASSERT_EQ_INT(at_buf_add_file(&whole, src), 0);
	uint64_t a = 5 * 1024 * 1024 - 7, e = a + 99;
	ASSERT_EQ_INT(artifact_read_range(s, sha, a, e, collect, &part), 0);
	ASSERT_EQ_INT(part.len, 100);
	ASSERT(memcmp(part.data, whole.data + a, 100) == 0);
	/* past the end: the server's 416 */
	at_buf_reset(&part);
	ASSERT_EQ_INT(artifact_read_range(s, sha, len + 10, len + 20, collect, &part), AT_EUNSATISFIABLE);
	at_buf_free(&whole);
	at_buf_free(&part);
	unlink(src);
	unlink(dst);
	artifact_store_close(s);
}

TEST(reads_are_verified)
{
	struct artifact_store *s = open_s3("atelier-secret");
	front("reset");
	char sha[65], dst[300];
	snprintf(dst, sizeof dst, "%s-corrupt", dir);
	const char *text = "bytes that must come back as they went";
	ASSERT_EQ_INT(artifact_put_bytes(s, text, strlen(text), sha), 0);
	/* one flipped byte on the wire: the second download is good */
	front("fault?corrupt=1");
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), 0);
	ASSERT_EQ_INT(stat_of("corrupted"), 1);
	unlink(dst);
	/* flipped every time: AT_ECORRUPT and no file */
	front("fault?corrupt=2");
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), AT_ECORRUPT);
	ASSERT_EQ_INT(stat_of("corrupted"), 3);
	ASSERT_EQ_INT(access(dst, F_OK), -1);
	artifact_store_close(s);
}

TEST(retries_on_5xx_and_stalls)
{
	struct artifact_store *s = open_s3("atelier-secret");
	front("reset");
	char sha[65];
	front("fault?status=503&count=2");
	ASSERT_EQ_INT(artifact_put_bytes(s, "retry me", 8, sha), 0);
	ASSERT_EQ_INT(stat_of("faults"), 2);
	ASSERT(artifact_exists(s, sha));
	/* a stall longer than the timeout (2 s) is given up and retried */
	front("reset");
	front("fault?stall=1&ms=4000");
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t size;
	ASSERT_EQ_INT(artifact_stat(s, sha, &size), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_EQ_INT(size, 8);
	ASSERT_OP_DBL((double)(t1.tv_sec - t0.tv_sec), <, 3.9);
	/* more failures than retries: the error comes back */
	front("reset");
	front("fault?status=503&count=50");
	ASSERT_EQ_INT(artifact_put_bytes(s, "never stored", 12, sha), AT_EUNAVAILABLE);
	/* put_bytes asks first whether the object exists (HEAD, then PUT
	 * anyway when that fails): each is tried once and retried 3 times */
	ASSERT_EQ_INT(stat_of("faults"), 8);
	front("reset");
	artifact_store_close(s);
}

TEST(wrong_secret_is_refused)
{
	/* proves the front checks signatures: s3rver alone would take this */
	struct artifact_store *s = open_s3("not-the-secret");
	front("reset");
	char sha[65];
	ASSERT_EQ_INT(artifact_put_bytes(s, "forged", 6, sha), AT_EFORBIDDEN);
	ASSERT_OP_INT(stat_of("rejected"), >=, 1);
	ASSERT_EQ_INT(stat_of("verified"), 0);
	artifact_store_close(s);
	s = open_s3("atelier-secret");
	ASSERT(!artifact_exists(s, sha));
	artifact_store_close(s);
}

TEST(session_token_is_signed)
{
	/* temporary credentials: the token header must be signed with the rest */
	setenv("AWS_SESSION_TOKEN", "token/with+chars=", 1);
	struct artifact_store *s = open_s3("atelier-secret");
	front("reset");
	char sha[65], url[8192];
	ASSERT_EQ_INT(artifact_put_bytes(s, "with a token", 12, sha), 0);
	ASSERT(artifact_exists(s, sha));
	ASSERT_EQ_INT(artifact_presign(s, sha, 60, url, sizeof url), 0);
	ASSERT_CONTAINS(url, "X-Amz-Security-Token=token%2Fwith%2Bchars%3D");
	struct at_buf b;
	at_buf_init(&b, 1 << 20);
	ASSERT_EQ_INT(plain("GET", url, NULL, &b), 200);
	ASSERT_EQ_INT(stat_of("rejected"), 0);
	at_buf_free(&b);
	artifact_store_close(s);
	unsetenv("AWS_SESSION_TOKEN");
}

TEST(presigned_get)
{
	struct artifact_store *s = open_s3("atelier-secret");
	char sha[65], url[8192];
	const char *text = "presigned bytes";
	ASSERT_EQ_INT(artifact_put_bytes(s, text, strlen(text), sha), 0);
	ASSERT_EQ_INT(artifact_presign(s, sha, 60, url, sizeof url), 0);
	front("reset");
	struct at_buf b;
	at_buf_init(&b, 1 << 20);
	ASSERT_EQ_INT(plain("GET", url, NULL, &b), 200);
	ASSERT_EQ_INT(b.len, strlen(text));
	ASSERT(memcmp(b.data, text, b.len) == 0);
	at_buf_reset(&b);
	ASSERT_EQ_INT(plain("GET", url, "10-14", &b), 206);
	ASSERT_EQ_INT(b.len, 5);
	ASSERT(memcmp(b.data, "bytes", 5) == 0);
	ASSERT_EQ_INT(stat_of("presigned"), 2);
	/* a longer lifetime than was signed: refused */
	char *ex = strstr(url, "X-Amz-Expires=60");
	ASSERT(ex);
	ex[15] = '9';
	at_buf_reset(&b);
	ASSERT_EQ_INT(plain("GET", url, NULL, &b), 403);
	ASSERT_CONTAINS(b.data, "SignatureDoesNotMatch");
	at_buf_free(&b);
	char fsurl[64];
	ASSERT_EQ_INT(artifact_presign(s, sha, 0, fsurl, sizeof fsurl), AT_EINVAL);
	artifact_store_close(s);
}

TEST(settings_are_checked)
{
	need_server();
	struct artifact_store *s = NULL;
	ASSERT_EQ_INT(artifact_store_open("s3://Bad_Bucket/x", &s), AT_EINVAL);
	ASSERT_EQ_INT(artifact_store_open("s3://atelier/a b", &s), AT_EINVAL);
	setenv("ATELIER_S3_ENDPOINT", "ftp://127.0.0.1:1", 1);
	ASSERT_EQ_INT(artifact_store_open("s3://atelier/x", &s), AT_EINVAL);
	setenv("ATELIER_S3_ENDPOINT", endpoint, 1);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	ASSERT_EQ_INT(artifact_store_open("s3://atelier/x", &s), AT_EINVAL);
	setenv("AWS_SECRET_ACCESS_KEY", "atelier-secret", 1);
	setenv("ATELIER_S3_PART_SIZE", "1MiB", 1); /* under S3's 5 MiB part minimum */
	ASSERT_EQ_INT(artifact_store_open("s3://atelier/x", &s), AT_EINVAL);
	setenv("ATELIER_S3_PART_SIZE", "5MiB", 1);
	ASSERT_EQ_INT(artifact_store_open("s3://atelier/x/", &s), 0);
	ASSERT_STREQ(artifact_store_uri(s), "s3://atelier/x");
	artifact_store_close(s);
}

RUN_TESTS(put_head_get_list_delete, list_pages_past_one_answer, multipart_and_range, reads_are_verified,
	  retries_on_5xx_and_stalls, wrong_secret_is_refused, session_token_is_signed, presigned_get,
	  settings_are_checked)
