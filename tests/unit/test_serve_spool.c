/* Unit tests for serving/spool.c (bounds, atomic files, oldest-first order,
 * recovery of a crashed write) and serving/stats.c (window quantiles). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../serving/spool.h"
#include "../../serving/stats.h"
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

static size_t file_image(char *out, size_t cap, const char *meta, const char *img)
{
	int n = snprintf(out, cap, "ATSPOOL1\n%s\n%s", meta, img);
	return (size_t)n;
}

TEST(spool_bounds_and_order)
{
	fresh_dir();
	struct spool *s = NULL;
	ASSERT_EQ_INT(spool_open(dir, 3, 1 << 20, &s), 0);
	char buf[256];
	const char *imgs[] = {"first", "second", "third"};
	for (int i = 0; i < 3; i++) {
		size_t n = file_image(buf, sizeof buf, "{\"content_type\":\"image/png\"}", imgs[i]);
		ASSERT_EQ_INT(spool_reserve(s, n), 0);
		ASSERT_EQ_INT(spool_write(s, buf, n), 0);
	}
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
	char buf[128];
	size_t n = file_image(buf, sizeof buf, "{}", "img");
	ASSERT_EQ_INT(spool_reserve(s, n), 0);
	ASSERT_EQ_INT(spool_write(s, buf, n), 0);
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

TEST(stats_window_quantiles)
{
	struct stats *st = NULL;
	ASSERT_EQ_INT(stats_new(&st), 0);
	for (int i = 1; i <= 100; i++)
		stats_record(st, 200, i / 1000.0); /* 1..100 ms */
	stats_record(st, 400, 0.0005);            /* client errors stay out of latency and error rate */
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

RUN_TESTS(spool_bounds_and_order, spool_byte_bound, spool_reopen_counts_files_and_drops_temporaries,
	  spool_rejects_malformed_files, stats_window_quantiles)
