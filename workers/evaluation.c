/*
 * evaluation.c — the gate (evaluation.h). The gate is a table of metric directions plus four rule
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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int eval_boot_mean(const double *x, int n, int reps, uint64_t seed, double *lo, double *hi)
{
	if (!x || n < 1 || reps < 2 || reps > 100000)
		return AT_EINVAL;
	double *m = malloc((size_t)reps * sizeof *m);
	if (!m)
		return AT_ENOMEM;
	uint64_t s = seed;
	for (int r = 0; r < reps; r++) {
		double sum = 0;
		for (int i = 0; i < n; i++)
			sum += x[splitmix64_next(&s) % (uint64_t)n];
		m[r] = sum / n;
	}
	qsort(m, (size_t)reps, sizeof *m, cmp_double);
	int last = reps - 1;
	*lo = m[(int)floor(0.05 * last)];
	*hi = m[(int)ceil(0.95 * last)];
	free(m);
	return 0;
}
