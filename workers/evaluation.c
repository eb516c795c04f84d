/*
 * evaluation.c — the gate and the 1-NN two-sample realism score
 * (evaluation.h). The gate is a table of metric directions plus four rule
 * kinds, each optionally on one slice of the holdout set; everything it
 * decides is written down as a reason, so a verdict explains itself in the
 * registry and in the failed job's error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "evaluation.h"
#include "image.h"
#include "metric.h"
#include "slice.h"
#include "splitmix.h"

/* Directions come from lib/metric.h, the one list. */
int gate_direction(const char *metric) { return metric_direction(metric); }

const char *gate_metric_name(int i) { return metric_name(i); }

/* The value of metric in obj: 1 when present and a number. */
static int metric_value(const json_t *obj, const char *metric, double *v)
{
	json_t *x = obj ? json_object_get(obj, metric) : NULL;
	if (!json_is_number(x))
		return 0;
	*v = json_number_value(x);
	return 1;
}

/* Decides one rule; writes its reason. */
static int gate_rule(const char *metric, const char *op, double thr, const json_t *cand, const json_t *champ,
		     double *cv, double *hv, int *has_champ, char *reason, size_t rlen)
{
	*has_champ = 0;
	if (!metric_value(cand, metric, cv)) {
		snprintf(reason, rlen, "%s: not reported by the candidate", metric);
		return 0;
	}
	if (!isfinite(*cv)) {
		snprintf(reason, rlen, "%s: candidate value is not finite", metric);
		return 0;
	}
	if (strcmp(op, "min") == 0) {
		int ok = *cv >= thr;
		snprintf(reason, rlen, "%s = %.4g %s min %.4g", metric, *cv, ok ? ">=" : "<", thr);
		return ok;
	}
	if (strcmp(op, "max") == 0) {
		int ok = *cv <= thr;
		snprintf(reason, rlen, "%s = %.4g %s max %.4g", metric, *cv, ok ? "<=" : ">", thr);
		return ok;
	}
	int change = strcmp(op, "max_regression") == 0 ? 1 : strcmp(op, "min_improvement") == 0 ? 2 : 0;
	if (!change) {
		snprintf(reason, rlen, "%s: unknown gate op \"%s\"", metric, op);
		return 0;
	}
	if (!champ) {
		snprintf(reason, rlen, "%s %s %.4g: no champion, passes", metric, op, thr);
		return 1;
	}
	int dir = gate_direction(metric);
	if (dir < 0) {
		snprintf(reason, rlen, "%s: unknown metric, no direction for %s", metric, op);
		return 0;
	}
	if (!metric_value(champ, metric, hv) || !isfinite(*hv)) {
		/* A champion that cannot be scored on this metric is no bar to clear. */
		snprintf(reason, rlen, "%s %s %.4g: champion has no value, passes", metric, op, thr);
		return 1;
	}
	*has_champ = 1;
	/* gain > 0: the candidate is better than the champion by that much */
	double gain = dir ? *cv - *hv : *hv - *cv;
	int ok = change == 1 ? gain >= -thr : gain >= thr;
	if (change == 1)
		snprintf(reason, rlen, "%s = %.4g vs champion %.4g: %s %.4g (max_regression %.4g)", metric, *cv, *hv,
			 gain >= 0 ? "better by" : "worse by", fabs(gain), thr);
	else
		snprintf(reason, rlen, "%s = %.4g vs champion %.4g: improvement %.4g %s min_improvement %.4g", metric,
			 *cv, *hv, gain, ok ? ">=" : "<", thr);
	return ok;
}

/* The metrics of a slice in a scores object ({..., "slices": {NAME: {..., "n"}}}). */
static json_t *slice_scores(const json_t *scores, const char *slice)
{
	return scores ? json_object_get(json_object_get(scores, "slices"), slice) : NULL;
}

json_t *gate_apply(const json_t *rules, const json_t *candidate, const json_t *champion)
{
	json_t *out = json_object(), *reasons = json_array(), *failed = json_array(), *details = json_array();
	json_t *empty = json_object();
	if (!out || !reasons || !failed || !details || !empty) {
		json_decref(out);
		json_decref(reasons);
		json_decref(failed);
		json_decref(details);
		json_decref(empty);
		return NULL;
	}
	int all = 1;
	size_t i;
	json_t *rule;
	json_array_foreach(rules, i, rule)
	{
		const char *metric = json_string_value(json_object_get(rule, "metric"));
		const char *op = json_string_value(json_object_get(rule, "op"));
		json_t *t = json_object_get(rule, "threshold");
		json_t *sl = json_object_get(rule, "slice");
		const char *slice = json_string_value(sl);
		char reason[320], why[256];
		double cv = NAN, hv = NAN;
		int has_champ = 0, ok;
		if (!metric || !op || !json_is_number(t) || (sl && !json_is_null(sl) && !slice)) {
			snprintf(reason, sizeof reason, "rule %zu is malformed (metric, op, threshold, slice)", i);
			ok = 0;
		} else if (slice && slice_from_name(slice) < 0) {
			snprintf(reason, sizeof reason, "%s: unknown slice \"%s\"", metric, slice);
			ok = 0;
		} else if (slice) {
			const json_t *cs = slice_scores(candidate, slice);
			json_t *n = json_object_get(cs, "n");
			if (!cs || (json_is_integer(n) && json_integer_value(n) == 0)) {
				snprintf(reason, sizeof reason, "slice %s: %s: no samples in slice %s, passes", slice,
					 metric, slice);
				ok = 1;
			} else {
				/* A champion without this slice is no bar to clear (empty: "no value"). */
				const json_t *hs = champion ? slice_scores(champion, slice) : NULL;
				ok = gate_rule(metric, op, json_number_value(t), cs,
					       champion ? (hs ? hs : empty) : NULL, &cv, &hv, &has_champ, why,
					       sizeof why);
				snprintf(reason, sizeof reason, "slice %s: %s", slice, why);
			}
		} else {
			ok = gate_rule(metric, op, json_number_value(t), candidate, champion, &cv, &hv, &has_champ,
				       reason, sizeof reason);
		}
		all &= ok;
		json_array_append_new(reasons, json_string(reason));
		if (!ok)
			json_array_append_new(failed, json_string(reason));
		json_array_append_new(details, json_pack("{s:s?, s:s?, s:O?, s:s*, s:o, s:o, s:b, s:s}", "metric",
							 metric, "op", op, "threshold", t, "slice", slice, "candidate",
							 isfinite(cv) ? json_real(cv) : json_null(), "champion",
							 has_champ ? json_real(hv) : json_null(), "passed", ok,
							 "reason", reason));
	}
	json_decref(empty);
	json_object_set_new(out, "passed", json_boolean(all));
	json_object_set_new(out, "reasons", reasons);
	json_object_set_new(out, "failed", failed);
	json_object_set_new(out, "rules", details);
	return out;
}

/* ---- 1-NN two-sample score ---- */

/* 32x32 RGB thumbnails: large enough to see shapes and texture, which 8x8
 * (the old size) blurred away until every model looked alike. */
#define FEAT_SIDE 32
#define FEAT_N (FEAT_SIDE * FEAT_SIDE * 3)
#define ACC_BOOTSTRAPS 200
#define ACC_SEED 0x316e6e2d633273ull

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int eval_realism_acc(const uint8_t *gen, int n_gen, int group, const uint8_t *real, int n_real, int w, int h,
		     am_interval *out)
{
	if (!gen || !real || !out || n_gen < 1 || n_real < 1 || w < 1 || h < 1 || group < 1 || n_gen % group ||
	    n_gen / group < 2)
		return AT_EINVAL;
	int n = n_gen + n_real, n_groups = n_gen / group;
	float *f = malloc((size_t)n * FEAT_N * sizeof *f);
	uint8_t *right = calloc((size_t)n, 1);
	double *boots = malloc(ACC_BOOTSTRAPS * sizeof *boots);
	uint8_t small[FEAT_N];
	int rc = 0;
	if (!f || !right || !boots) {
		rc = AT_ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		const uint8_t *src = i < n_gen ? gen + (size_t)i * w * h * 3 : real + (size_t)(i - n_gen) * w * h * 3;
		if (image_resize(src, w, h, 3, small, FEAT_SIDE, FEAT_SIDE) < 0) {
			rc = AT_EINTERNAL;
			goto out;
		}
		for (int k = 0; k < FEAT_N; k++)
			f[(size_t)i * FEAT_N + k] = small[k] / 255.0f;
	}
	int hits[2] = {0, 0};
	for (int i = 0; i < n; i++) {
		/* Leave one group out: a generated image's siblings (the outputs of
		 * the same sketch) share its layout and would be its nearest
		 * neighbours whatever the model paints, so they are no evidence. */
		int g0 = i < n_gen ? i / group * group : i, g1 = i < n_gen ? g0 + group : i + 1;
		double best = INFINITY;
		int best_j = -1;
		for (int j = 0; j < n; j++) {
			if (j >= g0 && j < g1)
				continue;
			double d = 0;
			const float *a = f + (size_t)i * FEAT_N, *b = f + (size_t)j * FEAT_N;
			for (int k = 0; k < FEAT_N; k++) {
				double x = a[k] - b[k];
				d += x * x;
			}
			/* ties go to the lower index: deterministic */
			if (d < best) {
				best = d;
				best_j = j;
			}
		}
		int li = i >= n_gen, lj = best_j >= n_gen;
		right[i] = best_j >= 0 && li == lj;
		hits[li] += right[i];
	}
	out->value = 0.5 * ((double)hits[0] / n_gen + (double)hits[1] / n_real);
	/* Bootstrap: the generated set by whole groups (siblings' outcomes are
	 * not independent), the real set by image, each on its own. */
	uint64_t s = ACC_SEED;
	for (int b = 0; b < ACC_BOOTSTRAPS; b++) {
		int hg = 0, hr = 0;
		for (int i = 0; i < n_groups; i++) {
			int g = (int)(splitmix64_next(&s) % (uint64_t)n_groups);
			for (int k = 0; k < group; k++)
				hg += right[g * group + k];
		}
		for (int i = 0; i < n_real; i++)
			hr += right[n_gen + splitmix64_next(&s) % (uint64_t)n_real];
		boots[b] = 0.5 * ((double)hg / n_gen + (double)hr / n_real);
	}
	qsort(boots, ACC_BOOTSTRAPS, sizeof *boots, cmp_double);
	out->lo = boots[(int)floor(0.05 * (ACC_BOOTSTRAPS - 1))];
	out->hi = boots[(int)ceil(0.95 * (ACC_BOOTSTRAPS - 1))];
out:
	free(f);
	free(right);
	free(boots);
	return rc;
}
