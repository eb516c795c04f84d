/*
 * ratelimit.c — see ratelimit.h. Tokens are kept as a double and refilled
 * lazily on each take (elapsed time × rate, capped at burst), so an idle
 * bucket costs nothing.
 */
#include "ratelimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct rl_slot {
	uint8_t key[16];
	uint64_t last_ns; /* last refill; 0: slot unused */
	double tokens;
};

struct ratelimit {
	double rate, burst;
	size_t nsets;
	struct rl_slot *slots; /* nsets × RL_WAYS */
	uint64_t seed;
	struct ratelimit_stats st;
};

int ratelimit_new(double rate, double burst, size_t slots, struct ratelimit **out)
{
	if (!(rate > 0) || !(burst >= 1) || slots > ((size_t)1 << 28))
		return AT_EINVAL;
	size_t nsets = (slots + RL_WAYS - 1) / RL_WAYS;
	if (nsets == 0)
		nsets = 1;
	struct ratelimit *rl = calloc(1, sizeof *rl);
	if (!rl)
		return AT_ENOMEM;
	rl->slots = calloc(nsets * RL_WAYS, sizeof *rl->slots);
	if (!rl->slots) {
		free(rl);
		return AT_ENOMEM;
	}
	rl->rate = rate;
	rl->burst = burst;
	rl->nsets = nsets;
	/* a per-process seed so a client cannot pick addresses that share one set */
	rl->seed = (uint64_t)(uintptr_t)rl ^ 0x9e3779b97f4a7c15ull;
	rl->st.slots = nsets * RL_WAYS;
	*out = rl;
	return 0;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->slots);
	free(rl);
}

int ratelimit_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = in6->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, mapped, 12) == 0)
			memcpy(key, a, 16); /* IPv4-mapped: the whole IPv4 address */
		else
			memcpy(key, a, 8); /* the /64 */
		return 0;
	}
	return AT_EINVAL;
}

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int ratelimit_take(struct ratelimit *rl, const uint8_t key[16], uint64_t now_ns, double *retry_after_s)
{
	uint64_t a, b;
	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	size_t set = (size_t)(mix(mix(a ^ rl->seed) ^ b) % rl->nsets);
	struct rl_slot *ways = rl->slots + set * RL_WAYS, *s = NULL, *lru = &ways[0];
	if (now_ns == 0)
		now_ns = 1; /* 0 marks an unused slot */
	for (int i = 0; i < RL_WAYS; i++) {
		if (ways[i].last_ns && memcmp(ways[i].key, key, 16) == 0) {
			s = &ways[i];
			break;
		}
		if (ways[i].last_ns < lru->last_ns)
			lru = &ways[i];
	}
	if (!s) {
		if (lru->last_ns)
			rl->st.evicted++;
		else
			rl->st.used++;
		s = lru;
		memcpy(s->key, key, 16);
		s->tokens = rl->burst;
		s->last_ns = now_ns;
	} else if (now_ns > s->last_ns) {
		s->tokens += (double)(now_ns - s->last_ns) * 1e-9 * rl->rate;
		if (s->tokens > rl->burst)
			s->tokens = rl->burst;
		s->last_ns = now_ns;
	}
	if (s->tokens >= 1) {
		s->tokens -= 1;
		rl->st.admitted++;
		return 0;
	}
	rl->st.limited++;
	if (retry_after_s)
		*retry_after_s = (1 - s->tokens) / rl->rate;
	return AT_ERATELIMITED;
}

void ratelimit_stats(const struct ratelimit *rl, struct ratelimit_stats *out) { *out = rl->st; }
