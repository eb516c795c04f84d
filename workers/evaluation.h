/*
 * evaluation.h — the pure half of the evaluate stage: the pipeline's gate.
 * No database, no model: the unit test (tests/unit/test_jobs_gate.c) feeds
 * it crafted values.
 */
#ifndef ATELIER_WORKERS_EVALUATION_H
#define ATELIER_WORKERS_EVALUATION_H

#include <jansson.h>

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

#endif
