/*
 * test_jobs_gate.c — the evaluate stage's gate (workers/evaluation.c) on
 * crafted metric values: absolute and change rules, directions, no champion,
 * missing and non-finite metrics, reasons recorded, rules on one slice; the
 * metric table against docs/training.md; and the 1-NN two-sample realism
 * score with its interval on sets that are identical or clearly apart.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../workers/evaluation.h"
#include "err.h"
#include "slice.h"
#include "test.h"

static json_t *J(const char *text)
{
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);
	if (!j)
		fprintf(stderr, "bad JSON in test: %s: %s\n", text, err.text);
	return j;
}

static const char *reason(json_t *v, size_t i)
{
	return json_string_value(json_array_get(json_object_get(v, "reasons"), i));
}

TEST(absolute_rules)
{
	json_t *rules = J("[{\"metric\":\"edge_f1\",\"op\":\"min\",\"threshold\":0.2},"
			  "{\"metric\":\"realism_acc\",\"op\":\"max\",\"threshold\":0.9}]");
	json_t *ok = J("{\"edge_f1\":0.35,\"realism_acc\":0.6}");
	json_t *v = gate_apply(rules, ok, NULL);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "reasons")), 2);
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "failed")), 0);
	ASSERT_CONTAINS(reason(v, 0), "edge_f1 = 0.35 >= min 0.2");
	ASSERT_CONTAINS(reason(v, 1), "realism_acc = 0.6 <= max 0.9");
	json_decref(v);

	json_t *bad = J("{\"edge_f1\":0.1,\"realism_acc\":0.95}");
	v = gate_apply(rules, bad, NULL);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "failed")), 2);
	ASSERT_CONTAINS(reason(v, 0), "edge_f1 = 0.1 < min 0.2");
	ASSERT_CONTAINS(reason(v, 1), "realism_acc = 0.95 > max 0.9");
	json_t *r0 = json_array_get(json_object_get(v, "rules"), 0);
	ASSERT(json_is_false(json_object_get(r0, "passed")));
	ASSERT_OP_DBL(json_number_value(json_object_get(r0, "candidate")), ==, 0.1);
	ASSERT(json_is_null(json_object_get(r0, "champion")));
	json_decref(v);
	/* the boundary passes */
	json_t *edge = J("{\"edge_f1\":0.2,\"realism_acc\":0.9}");
	v = gate_apply(rules, edge, NULL);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	json_decref(v);
	json_decref(edge);
	json_decref(bad);
	json_decref(ok);
	json_decref(rules);
}

TEST(change_rules_without_champion_pass)
{
	json_t *rules = J("[{\"metric\":\"recon_l1\",\"op\":\"max_regression\",\"threshold\":0.05},"
			  "{\"metric\":\"edge_f1\",\"op\":\"min_improvement\",\"threshold\":0.1}]");
	json_t *c = J("{\"recon_l1\":0.5,\"edge_f1\":0.1}");
	json_t *v = gate_apply(rules, c, NULL);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	ASSERT_CONTAINS(reason(v, 0), "no champion");
	ASSERT_CONTAINS(reason(v, 1), "no champion");
	json_decref(v);
	json_decref(c);
	json_decref(rules);
}

TEST(change_rules_follow_metric_direction)
{
	json_t *rules = J("[{\"metric\":\"recon_l1\",\"op\":\"max_regression\",\"threshold\":0.05}]");
	json_t *champ = J("{\"recon_l1\":0.20,\"edge_f1\":0.40}");
	/* recon_l1: lower is better. 0.24 is worse by 0.04: within 0.05 */
	json_t *c = J("{\"recon_l1\":0.24}");
	json_t *v = gate_apply(rules, c, champ);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	ASSERT_CONTAINS(reason(v, 0), "worse by 0.04");
	json_decref(v);
	json_decref(c);
	/* worse by 0.1: fails */
	c = J("{\"recon_l1\":0.30}");
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_CONTAINS(json_string_value(json_array_get(json_object_get(v, "failed"), 0)),
			"recon_l1 = 0.3 vs champion 0.2");
	ASSERT_OP_DBL(json_number_value(json_object_get(json_array_get(json_object_get(v, "rules"), 0), "champion")),
		      ==, 0.2);
	json_decref(v);
	json_decref(c);
	json_decref(rules);

	/* edge_f1: higher is better */
	rules = J("[{\"metric\":\"edge_f1\",\"op\":\"min_improvement\",\"threshold\":0.05}]");
	c = J("{\"edge_f1\":0.46}");
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	json_decref(v);
	json_decref(c);
	c = J("{\"edge_f1\":0.42}");
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_CONTAINS(reason(v, 0), "< min_improvement 0.05");
	json_decref(v);
	json_decref(c);
	/* regression on a higher-is-better metric */
	json_decref(rules);
	rules = J("[{\"metric\":\"edge_f1\",\"op\":\"max_regression\",\"threshold\":0.01}]");
	c = J("{\"edge_f1\":0.35}");
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	json_decref(v);
	json_decref(c);
	json_decref(rules);
	json_decref(champ);
}

TEST(missing_nonfinite_unknown)
{
	json_t *rules = J("[{\"metric\":\"edge_f1\",\"op\":\"min\",\"threshold\":0},"
			  "{\"metric\":\"made_up\",\"op\":\"max_regression\",\"threshold\":0},"
			  "{\"metric\":\"diversity\",\"op\":\"sideways\",\"threshold\":0},"
			  "{\"metric\":\"diversity\"}]");
	json_t *c = J("{\"made_up\":1,\"diversity\":0.3}");
	json_t *champ = J("{\"made_up\":1}");
	json_t *v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "failed")), 4);
	ASSERT_CONTAINS(reason(v, 0), "edge_f1: not reported");
	ASSERT_CONTAINS(reason(v, 1), "unknown metric");
	ASSERT_CONTAINS(reason(v, 2), "unknown gate op");
	ASSERT_CONTAINS(reason(v, 3), "malformed");
	json_decref(v);
	json_decref(rules);
	/* NaN cannot come through JSON; a real NaN set directly must fail */
	rules = J("[{\"metric\":\"edge_f1\",\"op\":\"max\",\"threshold\":1}]");
	json_object_set_new(c, "edge_f1", json_real(0.5));
	json_t *nan_val = json_real(NAN); /* jansson refuses NaN: NULL */
	if (nan_val) {
		json_object_set_new(c, "edge_f1", nan_val);
		v = gate_apply(rules, c, NULL);
		ASSERT(json_is_false(json_object_get(v, "passed")));
		json_decref(v);
	}
	/* no rules: passes, nothing to say */
	json_t *none = J("[]");
	v = gate_apply(none, c, NULL);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "reasons")), 0);
	json_decref(v);
	json_decref(none);
	json_decref(rules);
	json_decref(c);
	json_decref(champ);
	ASSERT_EQ_INT(gate_direction("edge_f1"), 1);
	ASSERT_EQ_INT(gate_direction("recon_l1"), 0);
	ASSERT_EQ_INT(gate_direction("nope"), -1);
}

TEST(slice_rules)
{
	json_t *rules =
		J("[{\"metric\":\"kid\",\"op\":\"max_regression\",\"threshold\":0.02,\"slice\":\"contributions\"},"
		  "{\"metric\":\"content\",\"op\":\"max\",\"threshold\":3,\"slice\":\"synth\"},"
		  "{\"metric\":\"kid\",\"op\":\"max\",\"threshold\":1,\"slice\":\"photo\"},"
		  "{\"metric\":\"kid\",\"op\":\"max\",\"threshold\":1}]");
	json_t *champ = J("{\"kid\":0.10,\"slices\":{\"contributions\":{\"kid\":0.05,\"n\":2},"
			  "\"synth\":{\"kid\":0.12,\"content\":2.0,\"n\":6}}}");
	/* overall better, contributions worse by 0.05 > 0.02: fails naming the slice */
	json_t *c = J("{\"kid\":0.08,\"slices\":{\"contributions\":{\"kid\":0.10,\"n\":2},"
		      "\"synth\":{\"kid\":0.07,\"content\":2.5,\"n\":6},\"photo\":{\"n\":0}}}");
	json_t *v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "failed")), 1);
	ASSERT_CONTAINS(reason(v, 0), "slice contributions: kid = 0.1 vs champion 0.05: worse by 0.05");
	ASSERT_CONTAINS(reason(v, 1), "slice synth: content = 2.5 <= max 3");
	ASSERT_CONTAINS(reason(v, 2), "no samples in slice photo");
	ASSERT_CONTAINS(reason(v, 3), "kid = 0.08 <= max 1");
	json_t *r0 = json_array_get(json_object_get(v, "rules"), 0);
	ASSERT_STREQ(json_string_value(json_object_get(r0, "slice")), "contributions");
	ASSERT_OP_DBL(json_number_value(json_object_get(r0, "candidate")), ==, 0.10);
	ASSERT_OP_DBL(json_number_value(json_object_get(r0, "champion")), ==, 0.05);
	ASSERT(json_object_get(json_array_get(json_object_get(v, "rules"), 3), "slice") == NULL);
	json_decref(v);
	/* within tolerance: passes */
	json_object_set_new(json_object_get(json_object_get(c, "slices"), "contributions"), "kid", json_real(0.06));
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	json_decref(v);
	/* no champion: the change rule on the slice passes as "no champion" */
	v = gate_apply(rules, c, NULL);
	ASSERT(json_is_true(json_object_get(v, "passed")));
	ASSERT_CONTAINS(reason(v, 0), "slice contributions: kid max_regression 0.02: no champion");
	json_decref(v);
	json_decref(rules);
	/* a slice the candidate has no entry for passes; an unknown slice fails */
	rules = J("[{\"metric\":\"kid\",\"op\":\"max\",\"threshold\":0,\"slice\":\"imports\"},"
		  "{\"metric\":\"kid\",\"op\":\"max\",\"threshold\":1,\"slice\":\"nope\"},"
		  "{\"metric\":\"kid\",\"op\":\"max\",\"threshold\":1,\"slice\":7}]");
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_CONTAINS(reason(v, 0), "no samples in slice imports, passes");
	ASSERT_CONTAINS(reason(v, 1), "unknown slice \"nope\"");
	ASSERT_CONTAINS(reason(v, 2), "malformed");
	ASSERT_EQ_INT(json_array_size(json_object_get(v, "failed")), 2);
	json_decref(v);
	json_decref(rules);
	/* a rule on a metric the slice lacks (recon_l1 is overall only) fails, naming the slice */
	rules = J("[{\"metric\":\"recon_l1\",\"op\":\"max\",\"threshold\":1,\"slice\":\"synth\"}]");
	v = gate_apply(rules, c, champ);
	ASSERT(json_is_false(json_object_get(v, "passed")));
	ASSERT_CONTAINS(reason(v, 0), "slice synth: recon_l1: not reported");
	json_decref(v);
	json_decref(rules);
	json_decref(c);
	json_decref(champ);

	/* the one source -> slice map */
	ASSERT_STREQ(slice_name(slice_of_source("synth")), "synth");
	ASSERT_STREQ(slice_name(slice_of_source("node:n1")), "contributions");
	ASSERT_STREQ(slice_name(slice_of_source("api")), "imports");
	ASSERT_STREQ(slice_name(slice_of_source("import:batch1")), "imports");
	ASSERT_STREQ(slice_name(slice_of_source(NULL)), "imports");
	ASSERT_STREQ(slice_name(slice_of_source("photo")), "photo");
	ASSERT_STREQ(slice_name(slice_of_source("photo:camera")), "photo");
	ASSERT_STREQ(slice_name(slice_of_source("scanner")), "other");
	ASSERT_EQ_INT(slice_from_name("contributions"), SLICE_CONTRIBUTIONS);
	ASSERT_EQ_INT(slice_from_name("contribution"), -1);
}

/* The direction table and docs/training.md's metric table list the same metrics
 * with the same direction. */
TEST(metric_table_matches_docs)
{
	const char *root = getenv("ATELIER_ROOT");
	char path[512], *text = NULL;
	snprintf(path, sizeof path, "%s/docs/training.md", root && *root ? root : ".");
	FILE *f = fopen(path, "rb");
	ASSERT(f != NULL);
	size_t cap = 1 << 20, len;
	ASSERT((text = malloc(cap + 1)) != NULL);
	len = fread(text, 1, cap, f);
	fclose(f);
	text[len] = 0;
	int n = 0;
	for (const char *m; (m = gate_metric_name(n)) != NULL; n++) {
		char row[96];
		snprintf(row, sizeof row, "| `%s` | %s |", m, gate_direction(m) ? "higher" : "lower");
		ASSERT_CONTAINS(text, row);
	}
	ASSERT_OP_DBL(n, >=, 7);
	free(text);
}

TEST(realism_acc_two_sample)
{
	enum { W = 16, N = 12 };
	size_t img = W * W * 3;
	uint8_t *a = malloc(N * img), *b = malloc(N * img), *dark = malloc(N * img);
	uint64_t x = 12345;
	for (size_t i = 0; i < N * img; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		a[i] = (uint8_t)(128 + (x >> 58));        /* bright noise */
		b[i] = (uint8_t)(128 + ((x >> 40) & 63)); /* more bright noise, same law */
		dark[i] = (uint8_t)((x >> 50) & 63);      /* another distribution */
	}
	am_interval iv;
	ASSERT_EQ_INT(eval_realism_acc(a, N, 1, dark, N, W, W, &iv), 0);
	ASSERT_OP_DBL(iv.value, ==, 1.0);
	ASSERT_OP_DBL(iv.lo, ==, 1.0); /* every bootstrap agrees */
	ASSERT_EQ_INT(eval_realism_acc(a, N, 1, b, N, W, W, &iv), 0);
	ASSERT_OP_DBL(iv.value, <, 0.8);
	ASSERT_OP_DBL(iv.value, >=, 0.0);
	ASSERT_OP_DBL(iv.lo, <=, iv.value);
	ASSERT_OP_DBL(iv.hi, >=, iv.value);
	ASSERT_OP_DBL(iv.hi, >, iv.lo); /* mixed outcomes: the interval has width */
	/* identical sets: every image's nearest other image is its twin in the other set */
	ASSERT_EQ_INT(eval_realism_acc(a, N, 1, a, N, W, W, &iv), 0);
	ASSERT_OP_DBL(iv.value, ==, 0.0);
	ASSERT_OP_DBL(iv.hi, ==, 0.0);
	ASSERT_EQ_INT(eval_realism_acc(a, 0, 1, a, N, W, W, &iv), AT_EINVAL);
	ASSERT_EQ_INT(eval_realism_acc(a, N, 5, a, N, W, W, &iv), AT_EINVAL); /* 12 is no multiple of 5 */
	ASSERT_EQ_INT(eval_realism_acc(a, N, N, a, N, W, W, &iv), AT_EINVAL); /* one group: nothing to compare */
	free(a);
	free(b);
	free(dark);
}

/*
 * Evaluate stylizes each sketch in several styles; the outputs of one sketch
 * share its layout. Crafted so: every image is a painting-like layout
 * (noise) plus a small per-style tint; the generated images come 4 to a
 * layout (one sketch, 4 styles), the real ones each have their own layout.
 * Each generated image alone is drawn exactly as a real one is, so an honest
 * test must find the sets alike (~0.5). Plain leave-one-out cannot: every
 * generated image's nearest neighbour is a sibling. Leaving the sketch's
 * group out can. A set that really differs (dark layouts) still scores 1.
 */
TEST(realism_acc_siblings_win_nothing)
{
	enum { W = 16, G = 4, NG = 10 * G, NR = 40 };
	size_t img = W * W * 3;
	uint8_t *gen = malloc(NG * img), *real = malloc(NR * img), *dark = malloc(NG * img);
	ASSERT(gen && real && dark);
	uint64_t x = 777;
	uint8_t layout[W * W * 3];
	for (int i = 0; i < NG + NR; i++) {
		if (i >= NG || i % G == 0)
			for (size_t p = 0; p < img; p++) {
				x = x * 6364136223846793005ULL + 1442695040888963407ULL;
				layout[p] = (uint8_t)(64 + (x >> 57)); /* 64..191 */
			}
		int style = i % G;
		uint8_t *dst = i < NG ? gen + (size_t)i * img : real + (size_t)(i - NG) * img;
		for (size_t p = 0; p < img; p++)
			dst[p] = (uint8_t)(layout[p] + (p % 3 == (size_t)style % 3 ? 12 : 0) - (style == 3 ? 6 : 0));
		if (i < NG)
			for (size_t p = 0; p < img; p++)
				dark[(size_t)i * img + p] = (uint8_t)(dst[p] / 3);
	}
	am_interval plain, grouped, apart;
	ASSERT_EQ_INT(eval_realism_acc(gen, NG, 1, real, NR, W, W, &plain), 0);
	ASSERT_EQ_INT(eval_realism_acc(gen, NG, G, real, NR, W, W, &grouped), 0);
	ASSERT_EQ_INT(eval_realism_acc(dark, NG, G, real, NR, W, W, &apart), 0);
	printf("siblings: plain leave-one-out %.3f [%.3f, %.3f], leave-one-sketch-out %.3f [%.3f, %.3f], "
	       "dark set %.3f\n",
	       plain.value, plain.lo, plain.hi, grouped.value, grouped.lo, grouped.hi, apart.value);
	/* plain: the generated side is all right by siblings, so >= 0.5 + half the reals' share */
	ASSERT_OP_DBL(plain.value, >, 0.7);
	ASSERT_OP_DBL(grouped.value, >, 0.3);
	ASSERT_OP_DBL(grouped.value, <, 0.65);
	ASSERT_OP_DBL(grouped.lo, <=, grouped.value);
	ASSERT_OP_DBL(grouped.hi, >=, grouped.value);
	ASSERT_OP_DBL(grouped.hi, >, grouped.lo);
	ASSERT_OP_DBL(grouped.lo, <, 0.5); /* the interval does not claim a difference */
	ASSERT_OP_DBL(apart.value, ==, 1.0);
	free(gen);
	free(real);
	free(dark);
}

RUN_TESTS(absolute_rules, change_rules_without_champion_pass, change_rules_follow_metric_direction,
	  missing_nonfinite_unknown, slice_rules, metric_table_matches_docs, realism_acc_two_sample,
	  realism_acc_siblings_win_nothing)
