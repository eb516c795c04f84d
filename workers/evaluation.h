/*
 * evaluation.h — the pure half of the evaluate stage: the pipeline's gate
 * and the nearest-neighbour two-sample score. No database, no model: the
 * unit test (tests/unit/test_jobs_gate.c) feeds them crafted values.
 */
#ifndef ATELIER_WORKERS_EVALUATION_H
#define ATELIER_WORKERS_EVALUATION_H

#include <jansson.h>
#include <stdint.h>

/* 1: higher is better, 0: lower is better, -1: a metric the gate does not know. */
int gate_direction(const char *metric);

/*
 * Applies rules (a JSON array of {"metric", "op": min|max|max_regression|
 * min_improvement, "threshold"}) to the candidate's metrics (an object of
 * numbers) against the champion's (an object, or NULL when there is no
 * champion). Returns a new object
 *
 *   {"passed": bool, "reasons": ["...", ...], "failed": ["...", ...],
 *    "rules": [{"metric", "op", "threshold", "candidate", "champion",
 *               "passed", "reason"}, ...]}
 *
 * with one reason per rule, in rule order; "failed" holds the reasons of
 * the rules that failed. Change rules (max_regression, min_improvement) pass
 * with the reason "no champion" when champion is NULL. A metric the
 * candidate lacks, a non-finite value, an unknown op or (for change rules) a
 * metric of unknown direction fails its rule. NULL only on ENOMEM.
 */
json_t *gate_apply(const json_t *rules, const json_t *candidate, const json_t *champion);

/*
 * Realism as a classifier two-sample test (C2ST with a 1-nearest-neighbour
 * classifier, leave-one-out): features are the images shrunk to 8x8 RGB
 * (192 values in [0, 1]); each image is labelled with the set of its nearest
 * other image; the score is the balanced accuracy (mean of the per-set
 * accuracies). ~0.5 (or below) = the sets are indistinguishable, 1 = every
 * generated image sits next to generated ones. gen/real: n RGB images of
 * w x h packed one after the other; n_gen, n_real >= 1. Negative (AT_E*) on
 * bad arguments or ENOMEM.
 */
double eval_realism_acc(const uint8_t *gen, int n_gen, const uint8_t *real, int n_real, int w, int h);

#endif
