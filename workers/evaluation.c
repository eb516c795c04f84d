/*
 * evaluation.c — the gate and the 1-NN two-sample realism score
 * (evaluation.h). The gate is a table of metric directions plus four rule
 * kinds; everything it decides is written down as a reason, so a verdict
 * explains itself in the registry and in the failed job's error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "evaluation.h"
#include "image.h"

/* Metrics the evaluate stage reports, and which way is better. */
static const struct {
	const char *name;
	int higher_better;
} metric_dirs[] = {
	{"edge_f1", 1},     /* content preservation */
	{"diversity", 1},   /* mean pairwise L1 across style codes */
	{"realism_mmd", 0}, /* MMD^2 on fixed random features */
	{"realism_acc", 0}, /* 1-NN two-sample accuracy, 0.5 = indistinguishable */
	{"recon_l1", 0},    /* painting reconstruction error */
};

int gate_direction(const char *metric)
{
	for (size_t i = 0; i < sizeof metric_dirs / sizeof metric_dirs[0]; i++)
		if (strcmp(metric_dirs[i].name, metric) == 0)
			return metric_dirs[i].higher_better;
	return -1;
}

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

json_t *gate_apply(const json_t *rules, const json_t *candidate, const json_t *champion)
{
	json_t *out = json_object(), *reasons = json_array(), *failed = json_array(), *details = json_array();
	if (!out || !reasons || !failed || !details) {
		json_decref(out);
		json_decref(reasons);
		json_decref(failed);
		json_decref(details);
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
		char reason[256];
		double cv = NAN, hv = NAN;
		int has_champ = 0, ok;
		if (!metric || !op || !json_is_number(t)) {
			snprintf(reason, sizeof reason, "rule %zu is malformed (metric, op, threshold)", i);
			ok = 0;
		} else {
			ok = gate_rule(metric, op, json_number_value(t), candidate, champion, &cv, &hv, &has_champ, reason,
				       sizeof reason);
		}
		all &= ok;
		json_array_append_new(reasons, json_string(reason));
		if (!ok)
			json_array_append_new(failed, json_string(reason));
		json_array_append_new(details,
				      json_pack("{s:s?, s:s?, s:O?, s:o, s:o, s:b, s:s}", "metric", metric, "op", op,
						"threshold", t, "candidate", isfinite(cv) ? json_real(cv) : json_null(),
						"champion", has_champ ? json_real(hv) : json_null(), "passed", ok,
						"reason", reason));
	}
	json_object_set_new(out, "passed", json_boolean(all));
	json_object_set_new(out, "reasons", reasons);
	json_object_set_new(out, "failed", failed);
	json_object_set_new(out, "rules", details);
	return out;
}

/* ---- 1-NN two-sample score ---- */

#define FEAT_SIDE 8
#define FEAT_N (FEAT_SIDE * FEAT_SIDE * 3)

double eval_realism_acc(const uint8_t *gen, int n_gen, const uint8_t *real, int n_real, int w, int h)
{
	if (!gen || !real || n_gen < 1 || n_real < 1 || w < 1 || h < 1)
		return AT_EINVAL;
	int n = n_gen + n_real;
	float *f = malloc((size_t)n * FEAT_N * sizeof *f);
	uint8_t small[FEAT_N];
	if (!f)
		return AT_ENOMEM;
	for (int i = 0; i < n; i++) {
		const uint8_t *src = i < n_gen ? gen + (size_t)i * w * h * 3 : real + (size_t)(i - n_gen) * w * h * 3;
		if (image_resize(src, w, h, 3, small, FEAT_SIDE, FEAT_SIDE) < 0) {
			free(f);
			return AT_EINTERNAL;
		}
		for (int k = 0; k < FEAT_N; k++)
			f[(size_t)i * FEAT_N + k] = small[k] / 255.0f;
	}
	int right[2] = {0, 0};
	for (int i = 0; i < n; i++) {
		double best = INFINITY;
		int best_j = -1;
		for (int j = 0; j < n; j++) {
			if (j == i)
				continue;
			double d = 0;
			for (int k = 0; k < FEAT_N; k++) {
				double x = f[(size_t)i * FEAT_N + k] - f[(size_t)j * FEAT_N + k];
				d += x * x;
			}
			/* ties go to the lower index: deterministic */
			if (d < best) {
				best = d;
				best_j = j;
			}
		}
		int li = i >= n_gen, lj = best_j >= n_gen;
		if (best_j >= 0 && li == lj)
			right[li]++;
	}
	free(f);
	return 0.5 * ((double)right[0] / n_gen + (double)right[1] / n_real);
}
