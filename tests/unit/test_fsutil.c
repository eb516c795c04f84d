/* Unit tests for lib/fsutil.c: mkdir -p over existing folders and through
 * files, sha256 of files against the FIPS 180-2 vectors (one of them larger
 * than the read buffer), and hex encoding of crafted bytes. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "test.h"

static char root[256];

static void make_root(void)
{
	snprintf(root, sizeof root, "/tmp/atelier-fsutil-test-%d", (int)getpid());
	ASSERT_EQ_INT(at_mkdir_p(root), 0);
}

static void cleanup(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	ASSERT_EQ_INT(system(cmd), 0);
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	ASSERT(f != NULL);
	ASSERT_EQ_INT(fwrite(data, 1, len, f), len);
	ASSERT_EQ_INT(fclose(f), 0);
}

TEST(mkdir_p_creates_parents_and_accepts_existing)
{
	make_root();
	char p[400];
	snprintf(p, sizeof p, "%s/a/b//c/", root);
	ASSERT_EQ_INT(at_mkdir_p(p), 0);
	snprintf(p, sizeof p, "%s/a/b/c", root);
	ASSERT(is_dir(p));
	/* again, and a prefix of it: folders that exist are success */
	ASSERT_EQ_INT(at_mkdir_p(p), 0);
	snprintf(p, sizeof p, "%s/a", root);
	ASSERT_EQ_INT(at_mkdir_p(p), 0);
	ASSERT_EQ_INT(at_mkdir_p("/"), 0);
	cleanup();
}

TEST(mkdir_p_refuses_files_in_the_way)
{
	make_root();
	char file[400], p[500];
	snprintf(file, sizeof file, "%s/plain", root);
	write_file(file, "x", 1);
	/* through a file: mkdir fails with ENOTDIR on the way */
	snprintf(p, sizeof p, "%s/sub/deeper", file);
	errno = 0;
	ASSERT_EQ_INT(at_mkdir_p(p), AT_EIO);
	ASSERT_EQ_INT(errno, ENOTDIR);
	/* the last component is a file: the three old copies called this
	 * success (mkdir's EEXIST), and the caller went on to write into it */
	errno = 0;
	ASSERT_EQ_INT(at_mkdir_p(file), AT_EIO);
	ASSERT_EQ_INT(errno, ENOTDIR);
	cleanup();
}

TEST(mkdir_p_refuses_empty_and_overlong_paths)
{
	ASSERT_EQ_INT(at_mkdir_p(""), AT_EINVAL);
	ASSERT_EQ_INT(at_mkdir_p(NULL), AT_EINVAL);
	/* the old copies cut a long path at 4096 bytes and created the prefix */
	size_t n = PATH_MAX + 10;
	char *p = malloc(n + 1);
	ASSERT(p != NULL);
	memset(p, 'a', n);
	for (size_t i = 0; i < n; i += 100)
		p[i] = '/';
	p[n] = 0;
	ASSERT_EQ_INT(at_mkdir_p(p), AT_EINVAL);
	free(p);
}

static void sha_of(const void *data, size_t len, const char *want)
{
	char path[400], hex[65];
	snprintf(path, sizeof path, "%s/f", root);
	write_file(path, data, len);
	uint64_t size = 12345;
	ASSERT_EQ_INT(at_file_sha256(path, hex, &size), 0);
	ASSERT_STREQ(hex, want);
	ASSERT_EQ_INT(size, len);
}

TEST(file_sha256_matches_known_vectors)
{
	make_root();
	sha_of("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha_of("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha_of(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* one million 'a': 15 full reads of the 64 KiB buffer and a partial one */
	size_t n = 1000000;
	char *m = malloc(n);
	ASSERT(m != NULL);
	memset(m, 'a', n);
	sha_of(m, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(m);
	cleanup();
}

/* The buffer form, on the same vectors (FIPS 180-2), writes 64 digits and a
 * NUL and nothing past them. */
static void buf_sha_of(const void *data, size_t len, const char *want)
{
	char hex[66];
	memset(hex, '#', sizeof hex);
	ASSERT_EQ_INT(at_sha256_hex(data, len, hex), 0);
	ASSERT_STREQ(hex, want);
	ASSERT_EQ_INT(hex[65], '#');
}

TEST(sha256_hex_matches_known_vectors)
{
	buf_sha_of(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	buf_sha_of("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	buf_sha_of(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	size_t n = 1000000;
	char *m = malloc(n);
	ASSERT(m != NULL);
	memset(m, 'a', n);
	buf_sha_of(m, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(m);
}

TEST(file_sha256_errors)
{
	make_root();
	char path[400], hex[65] = "untouched";
	snprintf(path, sizeof path, "%s/missing", root);
	ASSERT_EQ_INT(at_file_sha256(path, hex, NULL), AT_ENOTFOUND);
	ASSERT_STREQ(hex, "untouched");
	/* a folder opens but cannot be read */
	ASSERT_EQ_INT(at_file_sha256(root, hex, NULL), AT_EIO);
	ASSERT_STREQ(hex, "untouched");
	cleanup();
}

TEST(hex_encode_crafted_bytes)
{
	const unsigned char in[] = {0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xff};
	char out[2 * sizeof in + 2];
	memset(out, '#', sizeof out);
	at_hex_encode(out, in, sizeof in);
	ASSERT_STREQ(out, "00010f107f80abff");
	ASSERT_EQ_INT(out[2 * sizeof in + 1], '#'); /* nothing past the NUL */
	at_hex_encode(out, in, 0);
	ASSERT_STREQ(out, "");
}

TEST(dirname_of_paths)
{
	char d[64];
	at_dirname("var/artifacts/sha256/ab/abcd", d, sizeof d);
	ASSERT_STREQ(d, "var/artifacts/sha256/ab");
	at_dirname("/tmp/x.png", d, sizeof d);
	ASSERT_STREQ(d, "/tmp");
	at_dirname("x.png", d, sizeof d);
	ASSERT_STREQ(d, ".");
	at_dirname("/x", d, sizeof d);
	ASSERT_STREQ(d, "");
}

RUN_TESTS(mkdir_p_creates_parents_and_accepts_existing, mkdir_p_refuses_files_in_the_way,
	  mkdir_p_refuses_empty_and_overlong_paths, file_sha256_matches_known_vectors, sha256_hex_matches_known_vectors,
	  file_sha256_errors, hex_encode_crafted_bytes, dirname_of_paths)
