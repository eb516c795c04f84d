/*
 * evaluation.h — the pure half of the evaluate stage: the pipeline's gate
 * and the nearest-neighbour two-sample score. No database, no model: the
 * unit test (tests/unit/test_jobs_gate.c) feeds them crafted values.
 */
#ifndef ATELIER_WORKERS_EVALUATION_H
#define ATELIER_WORKERS_EVALUATION_H

#include <jansson.h>
#include <stdint.h>

#include "atelier_model.h"

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
 * Realism as a classifier two-sample test (C2ST with a 1-nearest-neighbour
 * classifier, leave-one-group-out): features are the images shrunk to 32x32
 * RGB (3072 values in [0, 1]); each image is labelled with the set of its
 * nearest other image; the score is the balanced accuracy (mean of the
 * per-set accuracies). The generated images come in groups of `group`
 * consecutive images (evaluate: one sketch's outputs, one per style); a
 * generated image's own group is left out of its neighbour search, since
 * siblings share the sketch's layout and would win the test for "generated"
 * whatever the model paints (group 1: plain leave-one-out). ~0.5 (or below)
 * = the sets are indistinguishable, 1 = every generated image sits next to
 * another sketch's outputs. out->lo/hi: the 5th and 95th percentiles over
 * 200 fixed-seed bootstrap resamplings of the outcomes, the generated set
 * resampled by whole groups and the real set by image. gen/real: n RGB
 * images of w x h packed one after the other; n_gen a multiple of group
 * with at least 2 groups, n_real >= 1. 0, or AT_EINVAL on bad arguments
 * (fewer than 2 groups included), AT_ENOMEM.
 */
int eval_realism_acc(const uint8_t *gen, int n_gen, int group, const uint8_t *real, int n_real, int w, int h,
		     am_interval *out);

#endif
