/*
 * ratelimit.h — per-client token buckets keyed by address, in a fixed table.
 *
 * Each client address owns a bucket of `burst` tokens that refills at `rate`
 * tokens a second; a request takes one token or is refused with the time
 * until the next one. The table is set-associative: an address hashes to a
 * set of RL_WAYS slots, and a new address takes the least recently used slot
 * of its set. So a lookup is O(1), memory is fixed at creation, and a flood
 * of new addresses only evicts buckets (an evicted client starts again with a
 * full bucket: the limit is per client for clients seen in the table's
 * window, never a global cap). IPv4 addresses are keyed as IPv4-mapped IPv6;
 * IPv6 addresses by their /64, which is what one host is usually given.
 * Not thread-safe: one limiter lives on one thread (the node's loop).
 */
#ifndef ATELIER_RATELIMIT_H
#define ATELIER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"

#define RL_WAYS 8

struct ratelimit;

struct ratelimit_stats {
	uint64_t admitted, limited, evicted;
	size_t slots, used;
};

/* rate: tokens a second (> 0); burst: bucket size (>= 1); slots: table size,
 * rounded up to a multiple of RL_WAYS (at least RL_WAYS). */
int ratelimit_new(double rate, double burst, size_t slots, struct ratelimit **out) AT_MUST_CHECK;
void ratelimit_free(struct ratelimit *rl);

/* The 16-byte key of an address (AF_INET or AF_INET6); AT_EINVAL otherwise. */
int ratelimit_key(const struct sockaddr *sa, uint8_t key[16]) AT_MUST_CHECK;

/* Take a token for key at now_ns (a monotonic clock). 0: admitted.
 * AT_ERATELIMITED: refused, *retry_after_s is the wait for the next token. */
int ratelimit_take(struct ratelimit *rl, const uint8_t key[16], uint64_t now_ns, double *retry_after_s);

void ratelimit_stats(const struct ratelimit *rl, struct ratelimit_stats *out);

#endif
