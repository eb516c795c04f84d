/* Unit tests for lib/http_range.c: the Range header of artifact downloads,
 * each form and each way it is refused or ignored, with the bytes it names. */
#include <string.h>

#include "http_range.h"
#include "test.h"

#define SENTINEL 0xdeadbeefULL

/* rc for h against a file of size bytes; first/last must stay untouched unless rc is 1 */
static int range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
	*first = *last = SENTINEL;
	int rc = http_range_parse(h, strlen(h), size, first, last);
	if (rc != 1) {
		ASSERT_EQ_INT(*first, SENTINEL);
		ASSERT_EQ_INT(*last, SENTINEL);
	}
	return rc;
}

static void expect(const char *h, uint64_t size, uint64_t want_first, uint64_t want_last)
{
	uint64_t f, l;
	int rc = range(h, size, &f, &l);
	if (rc != 1)
		fprintf(stderr, "for %s\n", h);
	ASSERT_EQ_INT(rc, 1);
	ASSERT_EQ_INT(f, want_first);
	ASSERT_EQ_INT(l, want_last);
}

static void expect_rc(const char *h, uint64_t size, int want)
{
	uint64_t f, l;
	int rc = range(h, size, &f, &l);
	if (rc != want)
		fprintf(stderr, "for %s\n", h);
	ASSERT_EQ_INT(rc, want);
}

TEST(single_ranges)
{
	expect("bytes=0-99", 1000, 0, 99);
	expect("bytes=5-", 1000, 5, 999);
	expect("bytes=990-5000", 1000, 990, 999); /* a last position past the end is cut */
	expect("bytes=999-999", 1000, 999, 999);
	expect("Bytes=0-0", 1000, 0, 0); /* the unit is case-insensitive */
	expect("bytes=0-99999999999999999999999", 1000, 0, 999);
	expect("bytes=0007-0010", 1000, 7, 10);
}

TEST(suffix_ranges_are_served)
{
	expect("bytes=-500", 1000, 500, 999); /* the last 500 bytes */
	expect("bytes=-1", 1000, 999, 999);
	expect("bytes=-5000", 1000, 0, 999); /* longer than the file: all of it */
	expect("bytes=-99999999999999999999999", 1000, 0, 999);
	expect_rc("bytes=-0", 1000, AT_EUNSATISFIABLE);
	expect_rc("bytes=-5", 0, 0); /* nothing to cut a suffix from: the (empty) file */
}

TEST(malformed_is_400_never_the_whole_file)
{
	static const char *const bad[] = {
		"bytes=0--1", "bytes=--1",   "bytes=+5-",  "bytes= 5-", "bytes=5 -", "bytes=5- ",     "bytes=5x-",
		"bytes=5-4",  "bytes=-",     "bytes=",     "bytes",     "=0-5",      "bytes=-5-",     "bytes=-+5",
		"bytes=0-5-", "bytes=0x10-", "bytes=1e3-", "bytes=a-b", "bytes=,",   "bytes=0-5,abc", "bytes=0-5,6-1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_rc(bad[i], 1000, AT_EINVAL);
}

TEST(unsatisfiable_is_416)
{
	expect_rc("bytes=1000-", 1000, AT_EUNSATISFIABLE);
	expect_rc("bytes=1000-2000", 1000, AT_EUNSATISFIABLE);
	expect_rc("bytes=99999999999999999999999-", 1000, AT_EUNSATISFIABLE);
	expect_rc("bytes=0-", 0, AT_EUNSATISFIABLE); /* an empty file has no byte 0 */
}

/* Several ranges or another unit: ignored (RFC 9110 14.2), the whole file with 200. */
TEST(ignored_headers)
{
	expect_rc("bytes=0-5,10-20", 1000, 0);
	expect_rc("bytes=0-5 , -3", 1000, 0); /* blanks around the commas of a list */
	expect_rc("bytes=0-5,2000-3000", 1000, 0);
	expect_rc("items=0-5", 1000, 0);
	expect_rc("pages=anything", 1000, 0);
	expect("bytes=0-5,", 1000, 0, 5); /* an empty list element is no range */
}

/* The value is len bytes, not a C string: nothing past len is read. */
TEST(reads_only_len_bytes)
{
	uint64_t f, l;
	const char h[] = "bytes=0-9XYZ";
	ASSERT_EQ_INT(http_range_parse(h, 9, 1000, &f, &l), 1);
	ASSERT_EQ_INT(f, 0);
	ASSERT_EQ_INT(l, 9);
	ASSERT_EQ_INT(http_range_parse(h, 10, 1000, &f, &l), AT_EINVAL);
}

RUN_TESTS(single_ranges, suffix_ranges_are_served, malformed_is_400_never_the_whole_file, unsatisfiable_is_416,
	  ignored_headers, reads_only_len_bytes)
