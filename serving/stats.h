/*
 * stats.h — what the node measures about its own answers: stylize requests
 * and errors (cumulative), and a sliding window of the last STATS_WINDOW
 * stylize latencies for p50/p95 and the recent error rate, plus a fixed
 * latency histogram for Prometheus. Written on the loop, read by the uplink
 * thread (heartbeats) and /metrics: one mutex.
 */
#ifndef SERVE_STATS_H
#define SERVE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define STATS_WINDOW 1024

struct stats_snapshot {
	uint64_t requests, errors; /* cumulative stylize requests; errors = 5xx answers */
	double error_rate;         /* over the window */
	double p50_ms, p95_ms;     /* over the window's successful requests; 0 when none */
	size_t window;             /* requests in the window */
};

struct stats;

int stats_new(struct stats **out) AT_MUST_CHECK;
void stats_free(struct stats *s);
/* One stylize answer: its HTTP status and seconds from arrival to reply. */
void stats_record(struct stats *s, int status, double seconds);
void stats_snapshot(struct stats *s, struct stats_snapshot *out);
/* Prometheus lines: histogram and summary of stylize latency, counters. */
int stats_metrics(struct stats *s, struct at_buf *b) AT_MUST_CHECK;

#endif
