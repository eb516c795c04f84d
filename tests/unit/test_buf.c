/* Unit tests for lib/buf.c and lib/err.c. */
#include "buf.h"
#include "err.h"
#include "test.h"

TEST(buf_appends_and_terminates)
{
	struct at_buf b;
	at_buf_init(&b, 0);
	ASSERT_EQ_INT(at_buf_addstr(&b, "abc"), 0);
	ASSERT_EQ_INT(at_buf_printf(&b, "-%d-", 42), 0);
	ASSERT_STREQ(b.data, "abc-42-");
	ASSERT_EQ_INT(b.len, 7);
	at_buf_free(&b);
}

TEST(buf_cap_is_hard)
{
	struct at_buf b;
	at_buf_init(&b, 8);
	ASSERT_EQ_INT(at_buf_add(&b, "12345678", 8), 0);
	ASSERT_EQ_INT(at_buf_add(&b, "9", 1), AT_ETOOBIG);
	ASSERT_EQ_INT(b.len, 8);
	ASSERT_STREQ(b.data, "12345678");
	at_buf_free(&b);
}

TEST(buf_printf_long)
{
	struct at_buf b;
	at_buf_init(&b, 0);
	char big[2000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	ASSERT_EQ_INT(at_buf_printf(&b, "<%s>", big), 0);
	ASSERT_EQ_INT(b.len, 2001);
	at_buf_free(&b);
}

TEST(err_table)
{
	ASSERT_STREQ(at_strerror(AT_ENOTFOUND), "not found");
	ASSERT_STREQ(at_err_name(AT_ETOOBIG), "TOOBIG");
	ASSERT_EQ_INT(at_err_http_status(AT_ETOOBIG), 413);
	ASSERT_EQ_INT(at_err_http_status(AT_EUNSUPPORTED), 415);
	ASSERT_EQ_INT(at_err_http_status(12345), 500);
	ASSERT_STREQ(at_strerror(0), "success");
}

RUN_TESTS(buf_appends_and_terminates, buf_cap_is_hard, buf_printf_long, err_table)
