/* Unit tests for serving/spool.c (bounds, atomic files, oldest-first order,
 * recovery of a crashed write) and serving/stats.c (window quantiles). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../serving/spool.h"
#include "../../serving/stats.h"
#include "receipt.h"
#include "test.h"

static char dir[256];

static void fresh_dir(void)
{
	snprintf(dir, sizeof dir, "/tmp/atelier-spool-test-%d", (int)getpid());
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		TEST_FAIL_("cannot clean %s", dir);
}

/* Reserves and writes one file the way the contribute handler does. */
static size_t put(struct spool *s, const char *meta, const char *img)
{
	size_t n = spool_file_size(strlen(meta), strlen(img));
	if (spool_reserve(s, n) != 0 || spool_write(s, meta, img, strlen(img)) != 0)
		TEST_FAIL_("cannot spool %s", img);
	return n;
}

TEST(spool_bounds_and_order)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 3, 1 << 20, &s), 0);
	const char *imgs[] = {"first", "second", "third"};
	for (int i = 0; i < 3; i++)
		put(s, "{\"content_type\":\"image/png\"}", imgs[i]);
	ASSERT_EQ_INT(spool_reserve(s, 10), AT_ETOOBIG); /* 3 files is the bound */
	int files;
	size_t bytes;
	spool_depth(s, &files, &bytes);
	ASSERT_EQ_INT(files, 3);
	ASSERT_EQ_INT(spool_ready(s), 3);
	for (int i = 0; i < 3; i++) {
		char path[4096];
		ASSERT_EQ_INT(spool_oldest(s, path, sizeof path), 0);
		json_t *meta;
		uint8_t *img;
		size_t len;
		ASSERT_EQ_INT(spool_read(path, &meta, &img, &len), 0);
		ASSERT_EQ_INT(len, strlen(imgs[i]));
		ASSERT(memcmp(img, imgs[i], len) == 0);
		ASSERT_STREQ(json_string_value(json_object_get(meta, "content_type")), "image/png");
		json_decref(meta);
		free(img);
		spool_remove(s, path);
	}
	char path[4096];
	ASSERT_EQ_INT(spool_oldest(s, path, sizeof path), AT_ENOTFOUND);
	spool_depth(s, &files, &bytes);
	ASSERT_EQ_INT(files, 0);
	ASSERT_EQ_INT(bytes, 0);
	spool_free(s);
}

TEST(spool_byte_bound)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 100, 4096, &s), 0);
	ASSERT_EQ_INT(spool_reserve(s, 4000), 0);
	ASSERT_EQ_INT(spool_reserve(s, 200), AT_ETOOBIG);
	spool_unreserve(s, 4000);
	ASSERT_EQ_INT(spool_reserve(s, 200), 0);
	spool_free(s);
}

TEST(spool_reopen_counts_files_and_drops_temporaries)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 10, 1 << 20, &s), 0);
	size_t n = put(s, "{}", "img");
	spool_free(s);
	/* a write that crashed before its rename */
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s/.tmp-crashed", dir);
	FILE *f = fopen(tmp, "w");
	ASSERT(f != NULL);
	fputs("partial", f);
	fclose(f);
	ASSERT_EQ_INT(spool_open(dir, 10, 1 << 20, &s), 0);
	int files;
	size_t bytes;
	spool_depth(s, &files, &bytes);
	ASSERT_EQ_INT(files, 1);
	ASSERT_EQ_INT(bytes, n);
	ASSERT(access(tmp, F_OK) != 0);
	spool_free(s);
}

TEST(spool_rejects_malformed_files)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 10, 1 << 20, &s), 0);
	char path[512];
	snprintf(path, sizeof path, "%s/0000000000000000-00000000-1.sk", dir);
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fputs("not a spool file", f);
	fclose(f);
	json_t *meta;
	uint8_t *img;
	size_t len;
	ASSERT_EQ_INT(spool_read(path, &meta, &img, &len), AT_ECORRUPT);
	ASSERT(meta == NULL && img == NULL);
	spool_free(s);
	fresh_dir(); /* leaves nothing behind */
}

/* spool_write and spool_read are the two halves of one format: whatever the
 * one writes (an empty image, bytes that look like the format) the other reads
 * back unchanged, the file is exactly spool_file_size() long, and metadata
 * that would break its one line is refused. */
TEST(spool_write_read_round_trip)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 10, 1 << 20, &s), 0);
	static const char img[] = "ATSPOOL1\n{}\n\0\xff binary";
	const char *meta = "{\"contributor\":\"a\\nb\",\"content_type\":\"image/png\"}";
	size_t n = spool_file_size(strlen(meta), sizeof img);
	ASSERT_EQ_INT(spool_reserve(s, n), 0);
	ASSERT_EQ_INT(spool_write(s, meta, img, sizeof img), 0);
	ASSERT_EQ_INT(spool_write(s, "{\n}", img, sizeof img), AT_EINVAL);
	char path[4096];
	ASSERT_EQ_INT(spool_oldest(s, path, sizeof path), 0);
	struct stat st;
	ASSERT_EQ_INT(stat(path, &st), 0);
	ASSERT_EQ_INT((size_t)st.st_size, n);
	json_t *m;
	uint8_t *got;
	size_t len;
	ASSERT_EQ_INT(spool_read(path, &m, &got, &len), 0);
	ASSERT_EQ_INT(len, sizeof img);
	ASSERT(memcmp(got, img, len) == 0);
	ASSERT_STREQ(json_string_value(json_object_get(m, "contributor")), "a\nb");
	json_decref(m);
	free(got);
	spool_remove(s, path);
	ASSERT_EQ_INT(spool_reserve(s, spool_file_size(2, 0)), 0);
	ASSERT_EQ_INT(spool_write(s, "{}", "", 0), 0);
	ASSERT_EQ_INT(spool_oldest(s, path, sizeof path), 0);
	ASSERT_EQ_INT(spool_read(path, &m, &got, &len), 0);
	ASSERT_EQ_INT(len, 0);
	json_decref(m);
	free(got);
	spool_remove(s, path);
	spool_free(s);
	fresh_dir();
}

TEST(stats_window_quantiles)
{
	struct stats *st = NULL;
	ASSERT_EQ_INT(stats_new(&st), 0);
	for (int i = 1; i <= 100; i++)
		stats_record(st, 200, i / 1000.0); /* 1..100 ms */
	stats_record(st, 400, 0.0005);             /* client errors stay out of latency and error rate */
	stats_record(st, 500, 0.2);
	struct stats_snapshot s;
	stats_snapshot(st, &s);
	ASSERT_EQ_INT(s.requests, 102);
	ASSERT_EQ_INT(s.errors, 1);
	ASSERT_EQ_INT(s.window, 101);
	ASSERT_OP_DBL(s.p50_ms, >, 49.9);
	ASSERT_OP_DBL(s.p50_ms, <, 50.1);
	ASSERT_OP_DBL(s.p95_ms, >, 94.9);
	ASSERT_OP_DBL(s.p95_ms, <, 95.1);
	ASSERT_OP_DBL(s.error_rate, >, 0.0098);
	ASSERT_OP_DBL(s.error_rate, <, 0.0100);
	/* the window slides: after STATS_WINDOW fast answers the slow ones are gone */
	for (int i = 0; i < STATS_WINDOW; i++)
		stats_record(st, 200, 0.002);
	stats_snapshot(st, &s);
	ASSERT_OP_DBL(s.p95_ms, <, 2.1);
	ASSERT_EQ_INT(s.error_rate == 0, 1);
	struct at_buf b;
	at_buf_init(&b, 0);
	ASSERT_EQ_INT(stats_metrics(st, &b), 0);
	ASSERT_CONTAINS(b.data, "atelier_stylize_duration_seconds_bucket{le=\"+Inf\"} 1124");
	ASSERT_CONTAINS(b.data, "atelier_stylize_errors_total 1");
	at_buf_free(&b);
	stats_free(st);
}

/* A keyed file is found and withdrawn by its key; a withdrawal never hits
 * the file the uplink is sending: it waits for the send to end, and then
 * finds it delivered (gone) or back in the queue (removed now). */
struct sender {
	struct spool *s;
	char path[4200];
	int deliver;
};

static void *send_then_end(void *arg)
{
	struct sender *x = arg;
	usleep(200 * 1000);
	if (x->deliver)
		spool_remove(x->s, x->path);
	spool_send_end(x->s);
	return NULL;
}

TEST(spool_keyed_find_and_withdraw)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 10, 1 << 20, &s), 0);
	const char *k1 = "0123456789abcdef0123456789abcdef", *k2 = "fedcba9876543210fedcba9876543210";
	ASSERT_EQ_INT(spool_write_keyed(s, "BAD-KEY", "{}", "x", 1), AT_EINVAL);
	const char *keys[] = {k1, k2};
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ_INT(spool_reserve(s, spool_file_size(2, 1)), 0);
		ASSERT_EQ_INT(spool_write_keyed(s, keys[i], "{}", "x", 1), 0);
	}
	char path[4200], oldest[4200];
	ASSERT_EQ_INT(spool_find(s, k1, path, sizeof path), 0);
	ASSERT_EQ_INT(spool_oldest(s, oldest, sizeof oldest), 0);
	ASSERT_STREQ(path, oldest); /* the key does not change the order */
	ASSERT_EQ_INT(spool_find(s, "00000000000000000000000000000000", path, sizeof path), AT_ENOTFOUND);

	/* k1 is being sent and fails: the withdrawal waits, then removes it */
	ASSERT_EQ_INT(spool_send_begin(s, oldest), 0);
	struct sender x = {.s = s, .deliver = 0};
	snprintf(x.path, sizeof x.path, "%s", oldest);
	pthread_t th;
	pthread_create(&th, NULL, send_then_end, &x);
	ASSERT_EQ_INT(spool_withdraw(s, k1, 5), 0);
	pthread_join(th, NULL);
	ASSERT_EQ_INT(spool_ready(s), 1);
	ASSERT_EQ_INT(spool_send_begin(s, oldest), AT_ENOTFOUND); /* the uplink skips it */

	/* k2 is being sent and delivered: the withdrawal finds nothing (ask atelierd) */
	ASSERT_EQ_INT(spool_find(s, k2, path, sizeof path), 0);
	ASSERT_EQ_INT(spool_send_begin(s, path), 0);
	struct sender y = {.s = s, .deliver = 1};
	snprintf(y.path, sizeof y.path, "%s", path);
	pthread_create(&th, NULL, send_then_end, &y);
	ASSERT_EQ_INT(spool_withdraw(s, k2, 5), AT_ENOTFOUND);
	pthread_join(th, NULL);
	int files;
	spool_depth(s, &files, NULL);
	ASSERT_EQ_INT(files, 0);
	ASSERT_EQ_INT(spool_ready(s), 0);
	spool_free(s);
}

TEST(receipt_format_and_hash)
{
	char a[RECEIPT_LEN + 1], b[RECEIPT_LEN + 1], ha[65], hb[65];
	ASSERT_EQ_INT(receipt_new(a, ha), 0);
	ASSERT_EQ_INT(receipt_new(b, hb), 0);
	ASSERT_EQ_INT((int)strlen(a), RECEIPT_LEN);
	ASSERT(strcmp(a, b) != 0);
	ASSERT_EQ_INT((int)strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), RECEIPT_LEN);
	uint8_t sha[32], back[32];
	ASSERT_EQ_INT(receipt_hash(a, strlen(a), sha), 0);
	ASSERT_EQ_INT(receipt_parse_hex(ha, 64, back), 0);
	ASSERT(memcmp(sha, back, 32) == 0); /* the node's hex and atelierd's hash agree */
	ASSERT_EQ_INT(receipt_hash(a, strlen(a) - 1, sha), AT_EINVAL);
	a[5] = '=';
	ASSERT_EQ_INT(receipt_hash(a, strlen(a), sha), AT_EINVAL);
	ha[0] = 'G';
	ASSERT_EQ_INT(receipt_parse_hex(ha, 64, back), AT_EINVAL);
}

RUN_TESTS(spool_keyed_find_and_withdraw, receipt_format_and_hash, spool_bounds_and_order, spool_byte_bound,
	  spool_reopen_counts_files_and_drops_temporaries, spool_rejects_malformed_files, spool_write_read_round_trip,
	  stats_window_quantiles)
