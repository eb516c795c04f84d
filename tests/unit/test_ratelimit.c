/* Unit tests for lib/ratelimit.c: burst, refill at the rate, the wait it
 * reports, separate clients, and a table that never grows past its slots. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "ratelimit.h"

#include "test.h"

#define SEC 1000000000ull

static void v4(const char *ip, uint8_t key[16])
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	ASSERT(inet_pton(AF_INET, ip, &in.sin_addr) == 1);
	ASSERT_EQ_INT(ratelimit_key((struct sockaddr *)&in, key), 0);
}

TEST(ratelimit_burst_then_refused_with_wait)
{
	struct ratelimit *rl;
	ASSERT_EQ_INT(ratelimit_new(2, 5, 64, &rl), 0);
	uint8_t k[16];
	v4("127.0.0.1", k);
	uint64_t t = 100 * SEC;
	for (int i = 0; i < 5; i++)
		ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), 0);
	double wait = -1;
	ASSERT_EQ_INT(ratelimit_take(rl, k, t, &wait), AT_ERATELIMITED);
	ASSERT(wait > 0.49 && wait < 0.51); /* one token at 2/s */
	/* another address has its own bucket */
	uint8_t k2[16];
	v4("127.0.0.2", k2);
	ASSERT_EQ_INT(ratelimit_take(rl, k2, t, NULL), 0);
	struct ratelimit_stats st;
	ratelimit_stats(rl, &st);
	ASSERT_EQ_INT(st.admitted, 6);
	ASSERT_EQ_INT(st.limited, 1);
	ratelimit_free(rl);
}

TEST(ratelimit_refills_at_rate_up_to_burst)
{
	struct ratelimit *rl;
	ASSERT_EQ_INT(ratelimit_new(4, 3, 64, &rl), 0);
	uint8_t k[16];
	v4("10.0.0.7", k);
	uint64_t t = 5 * SEC;
	for (int i = 0; i < 3; i++)
		ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), 0);
	ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), AT_ERATELIMITED);
	/* 0.5 s at 4/s: two tokens, not three */
	t += SEC / 2;
	ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), 0);
	ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), 0);
	ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), AT_ERATELIMITED);
	/* an hour idle refills to the burst only */
	t += 3600 * SEC;
	for (int i = 0; i < 3; i++)
		ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), 0);
	ASSERT_EQ_INT(ratelimit_take(rl, k, t, NULL), AT_ERATELIMITED);
	ratelimit_free(rl);
}

TEST(ratelimit_table_is_bounded_and_evicts)
{
	struct ratelimit *rl;
	ASSERT_EQ_INT(ratelimit_new(1, 1, 100, &rl), 0);
	struct ratelimit_stats st;
	ratelimit_stats(rl, &st);
	ASSERT_EQ_INT(st.slots, 104); /* rounded up to a multiple of RL_WAYS */
	uint8_t k[16];
	for (uint32_t i = 0; i < 10000; i++) {
		struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000000u + i)};
		ASSERT_EQ_INT(ratelimit_key((struct sockaddr *)&in, k), 0);
		ASSERT_EQ_INT(ratelimit_take(rl, k, SEC + i, NULL), 0);
	}
	ratelimit_stats(rl, &st);
	ASSERT(st.used <= st.slots);
	ASSERT_EQ_INT(st.used + st.evicted, 10000);
	ASSERT(st.evicted >= 10000 - 104);
	/* the most recent client is still in the table: its second request is refused */
	ASSERT_EQ_INT(ratelimit_take(rl, k, SEC + 10000, NULL), AT_ERATELIMITED);
	ratelimit_free(rl);
}

TEST(ratelimit_keys_ipv6_by_64_and_mapped_v4_as_v4)
{
	uint8_t a[16], b[16], c[16], m[16], four[16];
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	ASSERT(inet_pton(AF_INET6, "2001:db8:1:2::1", &s6.sin6_addr) == 1);
	ASSERT_EQ_INT(ratelimit_key((struct sockaddr *)&s6, a), 0);
	ASSERT(inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &s6.sin6_addr) == 1);
	ASSERT_EQ_INT(ratelimit_key((struct sockaddr *)&s6, b), 0);
	ASSERT(inet_pton(AF_INET6, "2001:db8:1:3::1", &s6.sin6_addr) == 1);
	ASSERT_EQ_INT(ratelimit_key((struct sockaddr *)&s6, c), 0);
	ASSERT(memcmp(a, b, 16) == 0); /* same /64 */
	ASSERT(memcmp(a, c, 16) != 0);
	ASSERT(inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6.sin6_addr) == 1);
	ASSERT_EQ_INT(ratelimit_key((struct sockaddr *)&s6, m), 0);
	v4("127.0.0.1", four);
	ASSERT(memcmp(m, four, 16) == 0);
	struct sockaddr bad = {.sa_family = AF_UNIX};
	ASSERT_EQ_INT(ratelimit_key(&bad, a), AT_EINVAL);
	struct ratelimit *rl;
	ASSERT_EQ_INT(ratelimit_new(0, 5, 8, &rl), AT_EINVAL);
	ASSERT_EQ_INT(ratelimit_new(1, 0.5, 8, &rl), AT_EINVAL);
}

RUN_TESTS(ratelimit_burst_then_refused_with_wait, ratelimit_refills_at_rate_up_to_burst,
	  ratelimit_table_is_bounded_and_evicts, ratelimit_keys_ipv6_by_64_and_mapped_v4_as_v4)
