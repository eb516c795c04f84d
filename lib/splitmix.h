/*
 * splitmix.h — splitmix64 (Steele, Lea and Flood, 2014), the one small
 * seedable random stream and integer hash behind every deterministic draw:
 * training batches, augmentation, evaluation bootstraps, the synthetic
 * world. Same input, same output, on every platform.
 */
#ifndef ATELIER_SPLITMIX_H
#define ATELIER_SPLITMIX_H

#include <stdint.h>

#define SPLITMIX64_GAMMA 0x9e3779b97f4a7c15ull

/* The finaliser: a bijective mix of x. */
static inline uint64_t splitmix64_mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The value a stream whose state is x draws next: a hash of x. */
static inline uint64_t splitmix64_at(uint64_t x) { return splitmix64_mix(x + SPLITMIX64_GAMMA); }

/* The next value of the stream *s, which advances. */
static inline uint64_t splitmix64_next(uint64_t *s)
{
	*s += SPLITMIX64_GAMMA;
	return splitmix64_mix(*s);
}

#endif
