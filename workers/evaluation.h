/*
 * evaluation.h — the pure half of the evaluate stage: the pipeline's gate.
 * No database, no model: the unit test (tests/unit/test_jobs_gate.c) feeds
 * it crafted values.
 */
#ifndef ATELIER_WORKERS_EVALUATION_H
#define ATELIER_WORKERS_EVALUATION_H

#include <jansson.h>
#include <stdint.h>

/* 1: higher is better, 0: lower is better, -1: a metric the gate does not
 * know (lib/metric.h's table). */
int gate_direction(const char *metric);
/* The i-th metric of that table, NULL past the end. */
const char *gate_metric_name(int i);

/*
 * Applies rules (a JSON array of {"metric", "op": min|max|max_regression|
 * min_improvement, "threshold", "slice"?}) to the candidate's metrics (an
 * object of numbers, with per-slice objects under "slices": {NAME: {...,
 * "n"}}) against the champion's (the same shape, or NULL when there is no
 * champion). A rule with a slice reads both sides' "slices".NAME; its reason
 * starts "slice NAME: "; a slice the candidate has no samples in passes with
 * "no samples in slice NAME"; an unknown slice name fails. Returns a new
 * object
 *
 *   {"passed": bool, "reasons": ["...", ...], "failed": ["...", ...],
 *    "rules": [{"metric", "op", "threshold", "slice"?, "candidate",
 *               "champion", "passed", "reason"}, ...]}
 *
 * with one reason per rule, in rule order; "failed" holds the reasons of
 * the rules that failed. Change rules (max_regression, min_improvement) pass
 * with the reason "no champion" when champion is NULL. A metric the
 * candidate lacks, a non-finite value, an unknown op or (for change rules) a
 * metric of unknown direction fails its rule. NULL only on ENOMEM.
 */
json_t *gate_apply(const json_t *rules, const json_t *candidate, const json_t *champion);

/*
 * A 90 % percentile-bootstrap interval of the mean of x[0..n): the 5th and
 * 95th percentiles (am_kid's rule) of the means of `reps` resamples drawn
 * with replacement from splitmix64(seed), so the same values give the same
 * interval. The units are what varies independently (evaluate passes one
 * value per sketch, its styles averaged, not one per output); paired
 * differences (candidate − champion per sketch) give the interval of a
 * change. n >= 1 (n = 1: lo = hi = x[0]), 2 <= reps <= 100000. Returns 0,
 * AT_EINVAL, AT_ENOMEM.
 */
int eval_boot_mean(const double *x, int n, int reps, uint64_t seed, double *lo, double *hi);

#endif
