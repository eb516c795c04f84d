/* Unit tests for lib/config.c: defaults, environment, flags, ranges, sizes. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "test.h"

struct s {
	const char *name;
	int port;
	double ratio;
	size_t body;
	int flag;
};

#define O(f) offsetof(struct s, f)
static const struct config_opt opts[] = {
	{"name", "TEST_CFG_NAME", CFG_STR, O(name), "dflt", 1, 0, "a string"},
	{"port", "TEST_CFG_PORT", CFG_INT, O(port), "8080", 0, 65535, "an int"},
	{"ratio", NULL, CFG_DOUBLE, O(ratio), "0.5", 0, 1, "a double"},
	{"body", NULL, CFG_SIZE, O(body), "8MiB", 1024, 1 << 30, "a size"},
	{"flag", NULL, CFG_BOOL, O(flag), "false", 1, 0, "a bool"},
};
#define N (sizeof opts / sizeof opts[0])

TEST(defaults)
{
	struct s v;
	char err[128];
	int argi;
	char *argv[] = {"prog"};
	unsetenv("TEST_CFG_NAME");
	unsetenv("TEST_CFG_PORT");
	ASSERT_EQ_INT(config_parse(opts, N, &v, 1, argv, &argi, err, sizeof err), 0);
	ASSERT_STREQ(v.name, "dflt");
	ASSERT_EQ_INT(v.port, 8080);
	ASSERT_OP_DBL(v.ratio, ==, 0.5);
	ASSERT_EQ_INT(v.body, 8 << 20);
	ASSERT_EQ_INT(v.flag, 0);
	ASSERT_EQ_INT(argi, 1);
}

TEST(env_then_flags_win)
{
	struct s v;
	char err[128];
	int argi;
	setenv("TEST_CFG_PORT", "9000", 1);
	setenv("TEST_CFG_NAME", "fromenv", 1);
	char *argv[] = {"prog", "--port", "7000", "--flag", "--body=2MiB", "serve", "--port", "1"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 8, argv, &argi, err, sizeof err), 0);
	ASSERT_EQ_INT(v.port, 7000);
	ASSERT_STREQ(v.name, "fromenv");
	ASSERT_EQ_INT(v.flag, 1);
	ASSERT_EQ_INT(v.body, 2 << 20);
	ASSERT_EQ_INT(argi, 5); /* stops at the first non-option */
	unsetenv("TEST_CFG_PORT");
	unsetenv("TEST_CFG_NAME");
}

TEST(errors_name_the_option)
{
	struct s v;
	char err[128];
	int argi;
	char *a1[] = {"prog", "--port", "70000"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 3, a1, &argi, err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "--port");
	ASSERT_CONTAINS(err, "out of range");
	char *a2[] = {"prog", "--port", "12x"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 3, a2, &argi, err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "invalid value");
	char *a3[] = {"prog", "--nope"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 2, a3, &argi, err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "unknown option --nope");
	char *a4[] = {"prog", "--port"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 2, a4, &argi, err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "needs a value");
	setenv("TEST_CFG_PORT", "abc", 1);
	char *a5[] = {"prog"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 1, a5, &argi, err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "TEST_CFG_PORT");
	unsetenv("TEST_CFG_PORT");
	char *a6[] = {"prog", "--help"};
	ASSERT_EQ_INT(config_parse(opts, N, &v, 2, a6, &argi, err, sizeof err), AT_ECANCELLED);
}

TEST(sizes)
{
	size_t v;
	ASSERT_EQ_INT(config_parse_size("512", &v), 0);
	ASSERT_EQ_INT(v, 512);
	ASSERT_EQ_INT(config_parse_size("4k", &v), 0);
	ASSERT_EQ_INT(v, 4096);
	ASSERT_EQ_INT(config_parse_size("1.5MiB", &v), 0);
	ASSERT_EQ_INT(v, 1572864);
	ASSERT_EQ_INT(config_parse_size("1GB", &v), 0);
	ASSERT_EQ_INT(v, 1 << 30);
	ASSERT_EQ_INT(config_parse_size("12 parsecs", &v), AT_EINVAL);
	ASSERT_EQ_INT(config_parse_size("-1", &v), AT_EINVAL);
	ASSERT_EQ_INT(config_parse_size("", &v), AT_EINVAL);
}

/* One yes/no vocabulary for settings and form fields (consent): every
 * spelling in any case, and no guessing at anything else. */
TEST(booleans)
{
	static const char *const yes[] = {"yes", "Y", "y", "TRUE", "true", "1", "On", "YES"};
	static const char *const no[] = {"no", "N", "n", "False", "false", "0", "off", "OFF"};
	static const char *const neither[] = {"", " yes", "yes ", "2", "ja", "yess", "t", "f", "nope", "-1"};
	int v;
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		v = -1;
		ASSERT_EQ_INT(config_parse_bool(yes[i], strlen(yes[i]), &v), 0);
		ASSERT_EQ_INT(v, 1);
	}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		v = -1;
		ASSERT_EQ_INT(config_parse_bool(no[i], strlen(no[i]), &v), 0);
		ASSERT_EQ_INT(v, 0);
	}
	for (size_t i = 0; i < sizeof neither / sizeof neither[0]; i++) {
		v = -1;
		ASSERT_EQ_INT(config_parse_bool(neither[i], strlen(neither[i]), &v), AT_EINVAL);
		ASSERT_EQ_INT(v, -1);
	}
	/* the length bounds the word: a form field is not NUL-terminated */
	ASSERT_EQ_INT(config_parse_bool("yesterday", 3, &v), 0);
	ASSERT_EQ_INT(v, 1);
	ASSERT_EQ_INT(config_parse_bool("on", 1, &v), AT_EINVAL);
	/* the settings table reads the same words */
	struct s st;
	char err[128];
	int argi;
	char *a1[] = {"prog", "--flag=Y"};
	ASSERT_EQ_INT(config_parse(opts, N, &st, 2, a1, &argi, err, sizeof err), 0);
	ASSERT_EQ_INT(st.flag, 1);
	char *a2[] = {"prog", "--flag=maybe"};
	ASSERT_EQ_INT(config_parse(opts, N, &st, 2, a2, &argi, err, sizeof err), AT_EINVAL);
	ASSERT_CONTAINS(err, "--flag");
}

RUN_TESTS(defaults, env_then_flags_win, errors_name_the_option, sizes, booleans)
