/* Unit tests for lib/artifact.c: content addressing, atomic idempotent puts,
 * verified reads that refuse tampered bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "fsutil.h"
#include "test.h"

static char root[256];

static struct artifact_store *open_store(void)
{
	snprintf(root, sizeof root, "/tmp/atelier-art-test-%d", (int)getpid());
	char uri[300];
	snprintf(uri, sizeof uri, "fs://%s", root);
	struct artifact_store *s = NULL;
	ASSERT_EQ_INT(artifact_store_open(uri, &s), 0);
	return s;
}

static void cleanup(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	ASSERT_EQ_INT(system(cmd), 0);
}

TEST(put_bytes_is_content_addressed)
{
	struct artifact_store *s = open_store();
	char sha[65], sha2[65];
	ASSERT_EQ_INT(artifact_put_bytes(s, "abc", 3, sha), 0);
	/* sha256("abc") */
	ASSERT_STREQ(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ASSERT(artifact_exists(s, sha));
	ASSERT_EQ_INT(artifact_put_bytes(s, "abc", 3, sha2), 0); /* again: a no-op */
	ASSERT_STREQ(sha, sha2);
	char path[4096];
	ASSERT_EQ_INT(artifact_path(s, sha, path, sizeof path), 0);
	ASSERT_CONTAINS(path, "/sha256/ba/ba7816bf");
	/* no temp files left behind */
	char tmpdir[300], cmd[400];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", root);
	snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", tmpdir);
	ASSERT_EQ_INT(system(cmd), 0);
	artifact_store_close(s);
	cleanup();
}

TEST(put_file_and_get_file_verify)
{
	struct artifact_store *s = open_store();
	char src[300], dst[300];
	snprintf(src, sizeof src, "%s-src", root);
	snprintf(dst, sizeof dst, "%s-dst", root);
	FILE *f = fopen(src, "wb");
	ASSERT(f != NULL);
	for (int i = 0; i < 100000; i++)
		fputc(i & 0xff, f);
	fclose(f);
	char sha[65], check[65];
	uint64_t size = 0, size2 = 0;
	ASSERT_EQ_INT(artifact_put_file(s, src, sha, &size), 0);
	ASSERT_EQ_INT(size, 100000);
	ASSERT_EQ_INT(at_file_sha256(src, check, &size2), 0);
	ASSERT_STREQ(sha, check);
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), 0);
	ASSERT_EQ_INT(at_file_sha256(dst, check, NULL), 0);
	ASSERT_STREQ(sha, check);
	/* tamper with the stored bytes: the verified read refuses them */
	char path[4096];
	ASSERT_EQ_INT(artifact_path(s, sha, path, sizeof path), 0);
	chmod(path, 0644);
	f = fopen(path, "r+b");
	ASSERT(f != NULL);
	fseek(f, 500, SEEK_SET);
	fputc('X', f);
	fclose(f);
	unlink(dst);
	ASSERT_EQ_INT(artifact_get_file(s, sha, dst), AT_ECORRUPT);
	ASSERT_EQ_INT(access(dst, F_OK), -1); /* nothing half-written at the destination */
	ASSERT_EQ_INT(artifact_get_file(s, "0000000000000000000000000000000000000000000000000000000000000000", dst),
		      AT_ENOTFOUND);
	unlink(src);
	artifact_store_close(s);
	cleanup();
}

TEST(names_are_checked)
{
	struct artifact_store *s = open_store();
	char path[4096];
	ASSERT_EQ_INT(artifact_path(s, "../../etc/passwd", path, sizeof path), AT_EINVAL);
	ASSERT_EQ_INT(artifact_path(s, "ABCDEF", path, sizeof path), AT_EINVAL);
	ASSERT(!artifact_valid_sha("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
	struct artifact_store *s3 = NULL;
	ASSERT_EQ_INT(artifact_store_open("ftp://bucket/x", &s3), AT_EUNSUPPORTED);
	artifact_store_close(s);
	cleanup();
}

static int count_item(const struct artifact_info *in, void *arg)
{
	int *n = arg;
	ASSERT(artifact_valid_sha(in->sha));
	ASSERT_EQ_INT(in->size, 5);
	(*n)++;
	return 0;
}

static int collect(const void *data, size_t len, void *arg) { return at_buf_add(arg, data, len); }

TEST(stat_range_list_delete)
{
	struct artifact_store *s = open_store();
	char sha[65], uri[4200];
	uint64_t size = 0;
	ASSERT(artifact_store_is_local(s));
	ASSERT_EQ_INT(artifact_put_bytes(s, "hello", 5, sha), 0);
	ASSERT_EQ_INT(artifact_stat(s, sha, &size), 0);
	ASSERT_EQ_INT(size, 5);
	ASSERT_EQ_INT(artifact_uri(s, sha, uri, sizeof uri), 0);
	ASSERT_CONTAINS(uri, "fs:///tmp/atelier-art-test-");
	ASSERT_CONTAINS(uri, sha);
	struct at_buf b;
	at_buf_init(&b, 1024);
	ASSERT_EQ_INT(artifact_read_range(s, sha, 1, 3, collect, &b), 0);
	ASSERT_EQ_INT(b.len, 3);
	ASSERT(memcmp(b.data, "ell", 3) == 0);
	ASSERT_EQ_INT(artifact_read_range(s, sha, 9, 12, collect, &b), AT_EUNSATISFIABLE);
	at_buf_free(&b);
	/* a stray file in the store is not an artifact */
	char stray[4200];
	snprintf(stray, sizeof stray, "%s/sha256/%.2s/not-a-sha", root, sha);
	FILE *f = fopen(stray, "w");
	ASSERT(f);
	fclose(f);
	int n = 0;
	ASSERT_EQ_INT(artifact_list(s, count_item, &n), 0);
	ASSERT_EQ_INT(n, 1);
	char url[256];
	ASSERT_EQ_INT(artifact_presign(s, sha, 60, url, sizeof url), AT_EUNSUPPORTED);
	ASSERT_EQ_INT(artifact_delete(s, sha), 0);
	ASSERT_EQ_INT(artifact_stat(s, sha, &size), AT_ENOTFOUND);
	ASSERT_EQ_INT(artifact_delete(s, sha), 0);
	artifact_store_close(s);
	cleanup();
}

RUN_TESTS(stat_range_list_delete, put_bytes_is_content_addressed, put_file_and_get_file_verify, names_are_checked)
