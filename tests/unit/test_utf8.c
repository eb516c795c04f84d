/* Unit tests for lib/utf8.c: what is valid text for a stored field, and
 * where a capped field may be cut. */
#include "utf8.h"

#include "test.h"

static int check(const char *s, size_t len, size_t *bad) { return utf8_check(s, len, bad); }

TEST(utf8_accepts_valid_text)
{
	static const char *ok[] = {"",
				   "ada",
				   "caf\xc3\xa9",
				   "\xe2\x82\xac 5",
				   "\xf0\x9f\x8e\xa8 art",
				   "\xed\x9f\xbf" /* U+D7FF */,
				   "\xf4\x8f\xbf\xbf" /* U+10FFFF */,
				   "\xef\xbf\xbd" /* U+FFFD */};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		size_t bad = 99;
		ASSERT_EQ_INT(check(ok[i], strlen(ok[i]), &bad), 0);
		ASSERT_EQ_INT(bad, 99); /* untouched on success */
	}
}

TEST(utf8_refuses_invalid_and_says_where)
{
	static const struct {
		const char *s;
		size_t len, at;
	} cases[] = {
		{"ab\xff", 3, 2},           /* never valid */
		{"\x80", 1, 0},             /* lone continuation */
		{"x\xc3", 2, 1},            /* cut before its continuation */
		{"\xc3\x28", 2, 0},         /* lead without continuation */
		{"\xc0\xaf", 2, 0},         /* overlong "/" */
		{"\xe0\x80\xaf", 3, 0},     /* overlong, 3 bytes */
		{"\xf0\x80\x80\xaf", 4, 0}, /* overlong, 4 bytes */
		{"ok\xed\xa0\x80", 5, 2},   /* surrogate U+D800 */
		{"\xf4\x90\x80\x80", 4, 0}, /* U+110000 */
		{"\xf5\x80\x80\x80", 4, 0}, /* F5 lead */
		{"a\0b", 3, 1},             /* NUL: PostgreSQL text cannot hold it */
		{"\xe2\x82", 2, 0},         /* euro sign cut short */
		{"\xe2\x82\x41", 3, 0},     /* bad third byte */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t bad = 99;
		ASSERT_EQ_INT(check(cases[i].s, cases[i].len, &bad), AT_EUNPROCESSABLE);
		ASSERT_EQ_INT(bad, cases[i].at);
	}
	ASSERT_EQ_INT(check("\xff", 1, NULL), AT_EUNPROCESSABLE);
}

TEST(utf8_cut_keeps_whole_characters)
{
	char s[300];
	memset(s, 'a', 255);
	memcpy(s + 255, "\xc3\xa9", 2); /* "a"*255 + "é": 257 bytes */
	ASSERT_EQ_INT(utf8_cut(s, 257, 256), 255);
	ASSERT_EQ_INT(utf8_check(s, utf8_cut(s, 257, 256), NULL), 0);
	ASSERT_EQ_INT(utf8_cut(s, 257, 257), 257);
	ASSERT_EQ_INT(utf8_cut(s, 257, 1000), 257);
	ASSERT_EQ_INT(utf8_cut(s, 257, 255), 255);
	/* a 4-byte character across the cap, at each offset */
	memcpy(s + 254, "\xf0\x9f\x8e\xa8", 4); /* bytes 254..257 */
	for (size_t max = 255; max <= 257; max++)
		ASSERT_EQ_INT(utf8_cut(s, 258, max), 254);
	ASSERT_EQ_INT(utf8_cut(s, 258, 258), 258);
	ASSERT_EQ_INT(utf8_cut(s, 258, 254), 254);
	ASSERT_EQ_INT(utf8_cut("\xc3\xa9", 2, 1), 0);
	ASSERT_EQ_INT(utf8_cut("", 0, 0), 0);
}

RUN_TESTS(utf8_accepts_valid_text, utf8_refuses_invalid_and_says_where, utf8_cut_keeps_whole_characters)
