/*
 * test.h — the unit-test harness (after libuv's test/task.h): one process per
 * test file, TEST(name) functions registered by RUN_TESTS, assertions that
 * print both sides and abort the test file on failure.
 *
 *   TEST(parses_empty) { ASSERT_EQ_INT(parse(""), AT_EINVAL); }
 *   RUN_TESTS(parses_empty, ...)
 *
 * Each test file prints "ok NAME" / "FAIL NAME" / "skip NAME" per test and
 * exits non-zero if any failed. SKIP("why") ends a test as skipped (from the
 * test or any helper it calls). Tests that need PostgreSQL read
 * ATELIER_TEST_DATABASE_URL (set by tests/run.sh) and call SKIP_WITHOUT_DB().
 */
#ifndef ATELIER_TEST_H
#define ATELIER_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>

static jmp_buf test_jmp_;
static const char *test_name_;

#define TEST_FAIL_(...)                                                            \
	do {                                                                       \
		fprintf(stderr, "%s:%d: in %s: ", __FILE__, __LINE__, test_name_); \
		fprintf(stderr, __VA_ARGS__);                                      \
		fprintf(stderr, "\n");                                             \
		longjmp(test_jmp_, 1);                                             \
	} while (0)

#define ASSERT(cond)                                               \
	do {                                                       \
		if (!(cond))                                       \
			TEST_FAIL_("assertion failed: %s", #cond); \
	} while (0)
#define ASSERT_EQ_INT(a, b)                                                   \
	do {                                                                  \
		long long a_ = (long long)(a), b_ = (long long)(b);           \
		if (a_ != b_)                                                 \
			TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_); \
	} while (0)
#define ASSERT_NE_INT(a, b)                                            \
	do {                                                           \
		long long a_ = (long long)(a), b_ = (long long)(b);    \
		if (a_ == b_)                                          \
			TEST_FAIL_("%s != %s: both %lld", #a, #b, a_); \
	} while (0)
#define ASSERT_OP_INT(a, op, b)                                                    \
	do {                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                \
		if (!(a_ op b_))                                                   \
			TEST_FAIL_("%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_); \
	} while (0)
#define ASSERT_OP_DBL(a, op, b)                                                \
	do {                                                                   \
		double a_ = (double)(a), b_ = (double)(b);                     \
		if (!(a_ op b_))                                               \
			TEST_FAIL_("%s %s %s: %g vs %g", #a, #op, #b, a_, b_); \
	} while (0)
#define ASSERT_STREQ(a, b)                                                                                        \
	do {                                                                                                      \
		const char *a_ = (a), *b_ = (b);                                                                  \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                            \
			TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
	} while (0)
#define ASSERT_CONTAINS(hay, needle)                                                          \
	do {                                                                                  \
		const char *h_ = (hay), *n_ = (needle);                                       \
		if (!h_ || !strstr(h_, n_))                                                   \
			TEST_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
	} while (0)

#define TEST(name) static void test_##name(void)

/* A skipped test must not count as passed: it leaves by longjmp, like a failure. */
#define SKIP(...)                                         \
	do {                                              \
		fprintf(stderr, "skip %s: ", test_name_); \
		fprintf(stderr, __VA_ARGS__);             \
		fprintf(stderr, "\n");                    \
		longjmp(test_jmp_, 2);                    \
	} while (0)

static inline const char *test_db_url(void) { return getenv("ATELIER_TEST_DATABASE_URL"); }
#define SKIP_WITHOUT_DB()                                          \
	do {                                                       \
		if (!test_db_url())                                \
			SKIP("ATELIER_TEST_DATABASE_URL not set"); \
	} while (0)

typedef void (*test_fn_)(void);
struct test_case_ {
	const char *name;
	test_fn_ fn;
};

static inline int test_run_all_(const struct test_case_ *cases, size_t n, int argc, char **argv)
{
	volatile int failed = 0, passed = 0, skipped = 0;
	for (volatile size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		test_name_ = cases[i].name;
		/* setjmp's value may only be used whole, as a controlling expression (C11 7.13.1.1). */
		switch (setjmp(test_jmp_)) {
		case 0:
			cases[i].fn();
			printf("ok %s\n", cases[i].name);
			passed++;
			break;
		case 2:
			printf("skip %s\n", cases[i].name);
			skipped++;
			break;
		default: printf("FAIL %s\n", cases[i].name); failed++;
		}
		fflush(stdout);
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}

#define TEST_ENTRY_(name) {#name, test_##name},
#define TEST_MAP_1(m, x) m(x)
#define RUN_TESTS(...)                                                                               \
	int main(int argc, char **argv)                                                              \
	{                                                                                            \
		static const struct test_case_ cases_[] = {TEST_FOREACH_(TEST_ENTRY_, __VA_ARGS__)}; \
		return test_run_all_(cases_, sizeof cases_ / sizeof cases_[0], argc, argv);          \
	}

/* Up to 40 tests per file. */
#define TEST_FE_1(m, x) m(x)
#define TEST_FE_2(m, x, ...) m(x) TEST_FE_1(m, __VA_ARGS__)
#define TEST_FE_3(m, x, ...) m(x) TEST_FE_2(m, __VA_ARGS__)
#define TEST_FE_4(m, x, ...) m(x) TEST_FE_3(m, __VA_ARGS__)
#define TEST_FE_5(m, x, ...) m(x) TEST_FE_4(m, __VA_ARGS__)
#define TEST_FE_6(m, x, ...) m(x) TEST_FE_5(m, __VA_ARGS__)
#define TEST_FE_7(m, x, ...) m(x) TEST_FE_6(m, __VA_ARGS__)
#define TEST_FE_8(m, x, ...) m(x) TEST_FE_7(m, __VA_ARGS__)
#define TEST_FE_9(m, x, ...) m(x) TEST_FE_8(m, __VA_ARGS__)
#define TEST_FE_10(m, x, ...) m(x) TEST_FE_9(m, __VA_ARGS__)
#define TEST_FE_11(m, x, ...) m(x) TEST_FE_10(m, __VA_ARGS__)
#define TEST_FE_12(m, x, ...) m(x) TEST_FE_11(m, __VA_ARGS__)
#define TEST_FE_13(m, x, ...) m(x) TEST_FE_12(m, __VA_ARGS__)
#define TEST_FE_14(m, x, ...) m(x) TEST_FE_13(m, __VA_ARGS__)
#define TEST_FE_15(m, x, ...) m(x) TEST_FE_14(m, __VA_ARGS__)
#define TEST_FE_16(m, x, ...) m(x) TEST_FE_15(m, __VA_ARGS__)
#define TEST_FE_17(m, x, ...) m(x) TEST_FE_16(m, __VA_ARGS__)
#define TEST_FE_18(m, x, ...) m(x) TEST_FE_17(m, __VA_ARGS__)
#define TEST_FE_19(m, x, ...) m(x) TEST_FE_18(m, __VA_ARGS__)
#define TEST_FE_20(m, x, ...) m(x) TEST_FE_19(m, __VA_ARGS__)
#define TEST_FE_21(m, x, ...) m(x) TEST_FE_20(m, __VA_ARGS__)
#define TEST_FE_22(m, x, ...) m(x) TEST_FE_21(m, __VA_ARGS__)
#define TEST_FE_23(m, x, ...) m(x) TEST_FE_22(m, __VA_ARGS__)
#define TEST_FE_24(m, x, ...) m(x) TEST_FE_23(m, __VA_ARGS__)
#define TEST_FE_25(m, x, ...) m(x) TEST_FE_24(m, __VA_ARGS__)
#define TEST_FE_26(m, x, ...) m(x) TEST_FE_25(m, __VA_ARGS__)
#define TEST_FE_27(m, x, ...) m(x) TEST_FE_26(m, __VA_ARGS__)
#define TEST_FE_28(m, x, ...) m(x) TEST_FE_27(m, __VA_ARGS__)
#define TEST_FE_29(m, x, ...) m(x) TEST_FE_28(m, __VA_ARGS__)
#define TEST_FE_30(m, x, ...) m(x) TEST_FE_29(m, __VA_ARGS__)
#define TEST_FE_31(m, x, ...) m(x) TEST_FE_30(m, __VA_ARGS__)
#define TEST_FE_32(m, x, ...) m(x) TEST_FE_31(m, __VA_ARGS__)
#define TEST_FE_33(m, x, ...) m(x) TEST_FE_32(m, __VA_ARGS__)
#define TEST_FE_34(m, x, ...) m(x) TEST_FE_33(m, __VA_ARGS__)
#define TEST_FE_35(m, x, ...) m(x) TEST_FE_34(m, __VA_ARGS__)
#define TEST_FE_36(m, x, ...) m(x) TEST_FE_35(m, __VA_ARGS__)
#define TEST_FE_37(m, x, ...) m(x) TEST_FE_36(m, __VA_ARGS__)
#define TEST_FE_38(m, x, ...) m(x) TEST_FE_37(m, __VA_ARGS__)
#define TEST_FE_39(m, x, ...) m(x) TEST_FE_38(m, __VA_ARGS__)
#define TEST_FE_40(m, x, ...) m(x) TEST_FE_39(m, __VA_ARGS__)
#define TEST_NARG_(...)                                                                                               \
	TEST_NARG_I_(__VA_ARGS__, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, \
		     19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define TEST_NARG_I_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21,   \
		     _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, _34, _35, _36, _37, _38, _39, _40, N, \
		     ...)                                                                                              \
	N
#define TEST_CAT_(a, b) TEST_CAT_I_(a, b)
#define TEST_CAT_I_(a, b) a##b
#define TEST_FOREACH_(m, ...) TEST_CAT_(TEST_FE_, TEST_NARG_(__VA_ARGS__))(m, __VA_ARGS__)

#endif
