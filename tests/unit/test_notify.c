/* Unit tests for orchestrator/notify.c's signature (the delivery path itself
 * is tested against a real receiver in tests/test_alerts.py). */
#include <string.h>

#include "../../orchestrator/notify.h" /* the Makefile gives C code -Ilib only */
#include "test.h"

/* Known answer, computed with Python's hmac module:
 * hmac.new(b"Jefe", b'1700000000.{"kind":"run.failed"}', sha256). */
TEST(sign_known_answer)
{
	const char *body = "{\"kind\":\"run.failed\"}";
	char sig[80];
	ASSERT_EQ_INT(notify_sign("Jefe", 4, 1700000000LL, body, strlen(body), sig, sizeof sig), 0);
	ASSERT_STREQ(sig, "sha256=bb7e6c47c95eebb76621d1097947afec6296efd57b94b2079c0bff004ba864bf");
}

/* The timestamp is signed: the same body at another time signs differently
 * (a replayed delivery cannot carry a fresh timestamp). */
TEST(sign_covers_timestamp_and_body)
{
	const char *body = "{}";
	char a[80], b[80], c[80];
	ASSERT_EQ_INT(notify_sign("k", 1, 100, body, 2, a, sizeof a), 0);
	ASSERT_EQ_INT(notify_sign("k", 1, 101, body, 2, b, sizeof b), 0);
	ASSERT_EQ_INT(notify_sign("k", 1, 100, "{ }", 3, c, sizeof c), 0);
	ASSERT(strcmp(a, b) != 0);
	ASSERT(strcmp(a, c) != 0);
	ASSERT_EQ_INT(strlen(a), 7 + 64);
	ASSERT_EQ_INT(notify_sign("k", 1, 100, body, 2, a, 71), AT_ERANGE);
}

RUN_TESTS(sign_known_answer, sign_covers_timestamp_and_body)
