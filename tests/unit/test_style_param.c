/* Unit tests for serving/style_param.c: the `style` and `alpha` fields of
 * POST /api/stylize, what each accepts and the spellings it refuses. */
#include <string.h>

#include "../../serving/style_param.h" /* the Makefile gives C code -Ilib only */
#include "test.h"

static int number(const char *s, uint64_t *v)
{
	*v = 777;
	int rc = style_param_number((const uint8_t *)s, strlen(s), v);
	if (rc < 0)
		ASSERT_EQ_INT(*v, 777); /* untouched on failure */
	return rc;
}

static int alpha(const char *s, float *a)
{
	*a = -7.0f;
	int rc = style_param_alpha((const uint8_t *)s, strlen(s), a);
	if (rc < 0)
		ASSERT(*a == -7.0f);
	return rc;
}

TEST(style_numbers)
{
	uint64_t v;
	ASSERT_EQ_INT(number("0", &v), 0);
	ASSERT_EQ_INT(v, 0);
	ASSERT_EQ_INT(number("42", &v), 0);
	ASSERT_EQ_INT(v, 42);
	ASSERT_EQ_INT(number("007", &v), 0);
	ASSERT_EQ_INT(v, 7);
	ASSERT_EQ_INT(number("4294967295", &v), 0); /* the largest: 2^32 - 1 */
	ASSERT_EQ_INT(v, 4294967295ULL);
}

/* 2^32 would seed the model's generator as 0 does: refused, not wrapped. */
TEST(style_refused_spellings)
{
	static const char *const bad[] = {"",
					  "4294967296",
					  "18446744073709551616",
					  "99999999999999999999999",
					  "+5",
					  " 5",
					  "5 ",
					  "5x",
					  "-1",
					  "1.5",
					  "0x10",
					  "1e3",
					  "５"};
	uint64_t v;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (number(bad[i], &v) != AT_EUNPROCESSABLE)
			fprintf(stderr, "for \"%s\"\n", bad[i]);
		ASSERT_EQ_INT(number(bad[i], &v), AT_EUNPROCESSABLE);
	}
	/* the bytes are len long, not a C string: "5\0" is not 5 */
	ASSERT_EQ_INT(style_param_number((const uint8_t *)"5\0", 2, &v), AT_EUNPROCESSABLE);
	ASSERT_EQ_INT(style_param_number((const uint8_t *)"59", 1, &v), 0);
	ASSERT_EQ_INT(v, 5);
}

TEST(alpha_values)
{
	static const struct {
		const char *s;
		float want;
	} ok[] = {{"0", 0.0f},    {"1", 1.0f},      {"0.25", 0.25f}, {".5", 0.5f},    {"1.", 1.0f},
		  {"5e-1", 0.5f}, {"25E-2", 0.25f}, {"1.0e0", 1.0f}, {"0.000", 0.0f}, {"1e-400", 0.0f}};
	float a;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		ASSERT_EQ_INT(alpha(ok[i].s, &a), 0);
		ASSERT(a == ok[i].want);
	}
}

TEST(alpha_refused_spellings)
{
	static const char *const bad[] = {"",     ".",     "e1",    ".e1",   "1e",
					  "1e+",  "+0.5",  "-0",    " 0.5",  "0.5 ",
					  "0.5x", "1.5",   "2",     "1e400", "inf",
					  "nan",  "0x0p0", "1.0.0", "0,5",   "0000000000000000000000000000000.5"};
	float a;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (alpha(bad[i], &a) != AT_EUNPROCESSABLE)
			fprintf(stderr, "for \"%s\"\n", bad[i]);
		ASSERT_EQ_INT(alpha(bad[i], &a), AT_EUNPROCESSABLE);
	}
}

RUN_TESTS(style_numbers, style_refused_spellings, alpha_values, alpha_refused_spellings)
