/*
 * Unit tests for orchestrator/pipeline_yaml.c and orchestrator/pipeline.c:
 * the example pipelines load, every bad file in tests/unit/yaml_cases/ fails
 * with the `line:column: message` its first line expects, stage order, the
 * canonical JSON and its hash, and the README's schema table.
 *
 * Files are found under $ATELIER_ROOT (set by tests/test_unit.py), else ".".
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../orchestrator/pipeline.h" /* the Makefile gives C code -Ilib only */
#include "../../orchestrator/pipeline_yaml.h"
#include "test.h"

static const char *root_path(char *buf, size_t size, const char *rel)
{
	const char *root = getenv("ATELIER_ROOT");
	snprintf(buf, size, "%s/%s", root && *root ? root : ".", rel);
	return buf;
}

/* The whole file, NUL-terminated; *len excludes the NUL. NULL if unreadable. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct at_buf b;
	char chunk[4096];
	size_t n;
	at_buf_init(&b, 0);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		if (at_buf_add(&b, chunk, n) < 0)
			break;
	fclose(f);
	if (!b.data && at_buf_add(&b, "", 0) < 0)
		return NULL;
	return at_buf_steal(&b, len);
}

static pipeline_t *parse_ok(const char *text)
{
	pipeline_t *p = NULL;
	struct pipeline_error e;
	int rc = pipeline_yaml_parse("t.yaml", text, strlen(text), &p, &e);
	if (rc != 0)
		fprintf(stderr, "unexpected error: %s\n", e.text);
	return p;
}

static void hash_of(const char *text, char hex[65])
{
	pipeline_t *p = parse_ok(text);
	ASSERT(p != NULL);
	ASSERT_EQ_INT(pipeline_hash(p, hex), 0);
	pipeline_free(p);
}

/* ---- the example files ---- */

TEST(example_sketch2paint_loads)
{
	char path[1024];
	pipeline_t *p = NULL;
	struct pipeline_error e;
	int rc = pipeline_yaml_load_file(root_path(path, sizeof path, "pipelines/sketch2paint.yaml"), &p, &e);
	if (rc != 0)
		TEST_FAIL_("%s", e.text);
	ASSERT_STREQ(p->name, "sketch2paint");
	ASSERT_STREQ(p->model, "sketch2paint");
	ASSERT_EQ_INT(p->concurrency, 1);
	ASSERT_EQ_INT(p->triggers.new_sketches, 200);
	ASSERT_EQ_INT(p->triggers.every_ms, 24LL * 3600 * 1000);
	ASSERT(p->triggers.manual);
	ASSERT_EQ_INT(p->n_stages, 5);

	const char *want[] = {"collect", "prepare", "train", "evaluate", "promote"};
	for (size_t i = 0; i < 5; i++)
		ASSERT_STREQ(p->stages[p->order[i]].name, want[i]);

	struct pipeline_stage *train = pipeline_stage_find(p, "train");
	ASSERT(train != NULL);
	ASSERT_EQ_INT(train->kind, PIPELINE_KIND_TRAIN);
	ASSERT_EQ_INT(train->timeout_ms, 2LL * 3600 * 1000);
	ASSERT_EQ_INT(train->retries, 3);
	ASSERT_EQ_INT(train->gpu, 0);
	ASSERT_EQ_INT(train->n_needs, 1);
	ASSERT_STREQ(train->needs[0], "prepare");
	ASSERT_STREQ(json_string_value(json_object_get(train->params, "warm_start")), "production");
	ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(train->params, "model"), "style_dim")), 8);
	/* The GPU preset is typed like the stage's params and is the larger one. */
	json_t *gpu = json_object_get(train->params, "gpu");
	ASSERT(json_is_object(gpu));
	ASSERT(json_integer_value(json_object_get(gpu, "steps")) >
	       json_integer_value(json_object_get(train->params, "steps")));
	ASSERT(json_integer_value(json_object_get(json_object_get(gpu, "model"), "gen_dim")) >
	       json_integer_value(json_object_get(json_object_get(train->params, "model"), "gen_dim")));

	struct pipeline_stage *ev = pipeline_stage_find(p, "evaluate");
	ASSERT_EQ_INT(ev->n_gate, 5);
	ASSERT_STREQ(ev->gate[0].metric, "content");
	ASSERT_EQ_INT(ev->gate[0].op, PIPELINE_GATE_MAX);
	ASSERT_OP_DBL(ev->gate[0].threshold, ==, 4.0);
	ASSERT(ev->gate[0].slice == NULL);
	ASSERT_EQ_INT(ev->gate[1].op, PIPELINE_GATE_MAX_REGRESSION);
	ASSERT_STREQ(ev->gate[2].metric, "kid");
	ASSERT_STREQ(ev->gate[3].metric, "kid");
	ASSERT_STREQ(ev->gate[3].slice, "contributions");
	ASSERT_OP_DBL(ev->gate[3].threshold, ==, 0.05);
	ASSERT_EQ_INT(ev->gate[4].op, PIPELINE_GATE_MAX_REGRESSION);

	/* durations in params reach the worker as milliseconds */
	struct pipeline_stage *pr = pipeline_stage_find(p, "promote");
	ASSERT_EQ_INT(json_integer_value(json_object_get(pr->params, "canary_bake")), 30000);
	pipeline_free(p);
}

TEST(example_tiny_loads)
{
	char path[1024];
	pipeline_t *p = NULL;
	struct pipeline_error e;
	int rc = pipeline_yaml_load_file(root_path(path, sizeof path, "pipelines/tiny.yaml"), &p, &e);
	if (rc != 0)
		TEST_FAIL_("%s", e.text);
	struct pipeline_stage *train = pipeline_stage_find(p, "train");
	ASSERT(json_integer_value(json_object_get(train->params, "steps")) <= 10);
	ASSERT_STREQ(json_string_value(json_object_get(train->params, "warm_start")), "scratch");
	ASSERT_EQ_INT(p->triggers.new_sketches, 0);
	ASSERT_EQ_INT(p->triggers.every_ms, 0);
	pipeline_free(p);
}

TEST(missing_file_is_eio)
{
	pipeline_t *p = (pipeline_t *)1;
	struct pipeline_error e;
	ASSERT_EQ_INT(pipeline_yaml_load_file("/nonexistent/x.yaml", &p, &e), AT_EIO);
	ASSERT(p == NULL);
	ASSERT_CONTAINS(e.text, "/nonexistent/x.yaml: cannot open");
}

/* ---- defaults and kinds ---- */

TEST(defaults_are_filled_in)
{
	pipeline_t *p = parse_ok("pipeline: p\nmodel: m\nstages:\n  train:\n  evaluate: {needs: [train]}\n"
				 "  s: {kind: sleep}\n  f: {kind: fail}\n  c: {kind: crash}\n  noop: ~\n");
	ASSERT(p != NULL);
	ASSERT_STREQ(p->description, "");
	ASSERT_EQ_INT(p->concurrency, 1);
	ASSERT(p->triggers.manual);
	struct pipeline_stage *t = pipeline_stage_find(p, "train");
	ASSERT_EQ_INT(t->timeout_ms, 3600 * 1000);
	ASSERT_EQ_INT(t->retries, 1);
	ASSERT_EQ_INT(t->cpu, 1);
	ASSERT_EQ_INT(json_integer_value(json_object_get(t->params, "checkpoint_every")), 100);
	ASSERT(json_is_object(json_object_get(t->params, "model")));
	ASSERT_EQ_INT(pipeline_stage_find(p, "s")->kind, PIPELINE_KIND_SLEEP);
	ASSERT_EQ_INT(json_integer_value(json_object_get(pipeline_stage_find(p, "s")->params, "duration")), 1000);
	ASSERT_STREQ(json_string_value(json_object_get(pipeline_stage_find(p, "f")->params, "message")),
		     "injected failure");
	ASSERT_EQ_INT(pipeline_stage_find(p, "c")->kind, PIPELINE_KIND_CRASH);
	ASSERT_EQ_INT(json_object_size(pipeline_stage_find(p, "noop")->params), 0);
	pipeline_free(p);
}

TEST(kind_table_round_trips)
{
	for (int k = 0; k < PIPELINE_KIND_COUNT_; k++)
		ASSERT_EQ_INT(pipeline_kind_from_name(pipeline_kind_name((enum pipeline_kind)k)), k);
	ASSERT_EQ_INT(pipeline_kind_from_name("nope"), -1);
	ASSERT(pipeline_kind_is_test_only(PIPELINE_KIND_SLEEP));
	ASSERT(!pipeline_kind_is_test_only(PIPELINE_KIND_TRAIN));
	for (int op = 0; op < PIPELINE_GATE_OP_COUNT_; op++)
		ASSERT_EQ_INT(pipeline_gate_op_from_name(pipeline_gate_op_name((enum pipeline_gate_op)op)), op);
}

TEST(model_params_pass_through)
{
	pipeline_t *p = parse_ok("pipeline: p\nmodel: m\nstages:\n  train:\n    params:\n"
				 "      model: {gen_dim: 16, activation: lrelu, widths: [1, 2.5, x], extra: {a: ~}}\n");
	ASSERT(p != NULL);
	json_t *m = json_object_get(pipeline_stage_find(p, "train")->params, "model");
	ASSERT_EQ_INT(json_integer_value(json_object_get(m, "gen_dim")), 16);
	ASSERT_STREQ(json_string_value(json_object_get(m, "activation")), "lrelu");
	ASSERT_EQ_INT(json_array_size(json_object_get(m, "widths")), 3);
	ASSERT(json_is_real(json_array_get(json_object_get(m, "widths"), 1)));
	ASSERT(json_is_null(json_object_get(json_object_get(m, "extra"), "a")));
	pipeline_free(p);
}

/* ---- the error table ---- */

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/*
 * Every tests/unit/yaml_cases/NAME.yaml starts with `# expect: L:C: message`
 * and must fail with exactly "NAME.yaml:L:C: message".
 */
TEST(error_cases)
{
	char dir[1024], path[2048];
	root_path(dir, sizeof dir, "tests/unit/yaml_cases");
	DIR *d = opendir(dir);
	if (!d)
		TEST_FAIL_("cannot open %s", dir);
	char *names[256];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < 256) {
		size_t l = strlen(de->d_name);
		if (l > 5 && strcmp(de->d_name + l - 5, ".yaml") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp_names);
	ASSERT_OP_INT(n, >=, 15);

	int failures = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		char *text = slurp(path, &len);
		ASSERT(text != NULL);
		const char *tag = "# expect: ";
		ASSERT(strncmp(text, tag, strlen(tag)) == 0);
		const char *exp = text + strlen(tag);
		const char *eol = strchr(exp, '\n');
		char want[600];
		snprintf(want, sizeof want, "%s:%.*s", names[i], (int)(eol ? eol - exp : (long)strlen(exp)), exp);

		pipeline_t *p = (pipeline_t *)1;
		struct pipeline_error e;
		int rc = pipeline_yaml_parse(names[i], text, len, &p, &e);
		if (rc >= 0 || p != NULL || strcmp(e.text, want) != 0) {
			fprintf(stderr, "%s:\n  want: %s\n  got:  %s (rc %d)\n", names[i], want,
				rc < 0 ? e.text : "success", rc);
			failures++;
		}
		pipeline_free(rc == 0 ? p : NULL);
		free(text);
		free(names[i]);
	}
	ASSERT_EQ_INT(failures, 0);
}

TEST(bad_arguments_and_limits)
{
	pipeline_t *p = NULL;
	struct pipeline_error e;
	ASSERT_EQ_INT(pipeline_yaml_parse("x.yaml", NULL, 5, &p, &e), AT_EINVAL);
	ASSERT_EQ_INT(pipeline_yaml_parse("x.yaml", NULL, 0, &p, NULL), AT_EUNPROCESSABLE); /* empty */
	size_t big = PIPELINE_YAML_MAX_BYTES + 1;
	char *text = malloc(big);
	ASSERT(text != NULL);
	memset(text, ' ', big);
	ASSERT_EQ_INT(pipeline_yaml_parse("big.yaml", text, big, &p, &e), AT_ETOOBIG);
	ASSERT_CONTAINS(e.text, "big.yaml:1:1: pipeline file is larger than");
	free(text);
	ASSERT(p == NULL);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* n openers then n closers: `[[[…]]]` (open '[') or `{a: {a: …}}` style. */
static char *nested(const char *open, const char *close, size_t n, size_t *len)
{
	size_t lo = strlen(open), lc = strlen(close);
	char *t = malloc(n * (lo + lc) + 1);
	ASSERT(t != NULL);
	for (size_t i = 0; i < n; i++) {
		memcpy(t + i * lo, open, lo);
		memcpy(t + n * lo + i * lc, close, lc);
	}
	*len = n * (lo + lc);
	t[*len] = '\0';
	return t;
}

/*
 * Hostile nesting is refused from libyaml's events, before a tree is built:
 * its scanner is quadratic in flow depth (60k levels took 9 s, a 200 KB
 * `[[[…]]]` minutes, on the threadpool that decodes uploads). The bound is
 * loose enough for a loaded 2-core machine; the fix takes milliseconds.
 */
TEST(deep_nesting_is_refused_fast)
{
	static const struct {
		const char *open, *close;
		size_t n;
		const char *want;
	} cases[] = {
		{"[", "]", 60000, "deep.yaml:1:65: value nested more than 64 levels deep"},
		{"[", "]", 100000, "deep.yaml:1:65: value nested more than 64 levels deep"}, /* 200 KB */
		{"{a: ", "}", 50000, "deep.yaml:1:257: value nested more than 64 levels deep"},
		{"- ", "", 100000, "deep.yaml:1:129: value nested more than 64 levels deep"}, /* block style */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len;
		char *text = nested(cases[i].open, cases[i].close, cases[i].n, &len);
		ASSERT_OP_INT(len, <=, PIPELINE_YAML_MAX_BYTES);
		pipeline_t *p = NULL;
		struct pipeline_error e;
		double t0 = now_s();
		int rc = pipeline_yaml_parse("deep.yaml", text, len, &p, &e);
		double dt = now_s() - t0;
		free(text);
		fprintf(stderr, "  %zu x %s: %.1f ms: %s\n", cases[i].n, cases[i].open, dt * 1e3, e.text);
		ASSERT_EQ_INT(rc, AT_ETOOBIG);
		ASSERT(p == NULL);
		ASSERT_STREQ(e.text, cases[i].want);
		ASSERT_OP_DBL(dt, <, 1.0);
	}
}

/* Many nodes as written stop at the node cap, also from the events. */
TEST(node_count_is_refused_fast)
{
	size_t n = 120000, len = 0;
	char *text = malloc(2 * n + 8);
	ASSERT(text != NULL);
	text[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		text[len++] = '1';
		text[len++] = ',';
	}
	text[len++] = ']';
	text[len] = '\0';
	pipeline_t *p = NULL;
	struct pipeline_error e;
	double t0 = now_s();
	int rc = pipeline_yaml_parse("wide.yaml", text, len, &p, &e);
	double dt = now_s() - t0;
	free(text);
	ASSERT_EQ_INT(rc, AT_ETOOBIG);
	/* node 10001: the sequence is node 1, so the 10000th "1", at column 2 + 2*9999 */
	ASSERT_STREQ(e.text, "wide.yaml:1:20000: document too large: more than 10000 YAML nodes (aliases count again "
			     "each time they are used)");
	ASSERT_OP_DBL(dt, <, 1.0);
}

/* Every prefix of a valid file is parsed or rejected cleanly (ASan/valgrind find the rest). */
TEST(truncations_never_crash)
{
	char path[1024];
	size_t len;
	char *text = slurp(root_path(path, sizeof path, "pipelines/sketch2paint.yaml"), &len);
	ASSERT(text != NULL);
	for (size_t cut = 0; cut <= len; cut++) {
		pipeline_t *p = NULL;
		struct pipeline_error e;
		int rc = pipeline_yaml_parse("cut.yaml", text, cut, &p, &e);
		if (rc < 0) {
			ASSERT(p == NULL);
			ASSERT(e.line >= 1 && e.column >= 1);
			ASSERT(strncmp(e.text, "cut.yaml:", 9) == 0);
		}
		pipeline_free(p);
	}
	free(text);
}

/* ---- the DAG ---- */

TEST(dag_order_is_topological_and_deterministic)
{
	/* a diamond declared backwards: d needs b and c, both need a */
	pipeline_t *p = parse_ok("pipeline: p\nmodel: m\nstages:\n"
				 "  d: {kind: noop, needs: [c, b]}\n"
				 "  c: {kind: noop, needs: [a]}\n"
				 "  b: {kind: noop, needs: [a]}\n"
				 "  e: {kind: noop}\n"
				 "  a: {kind: noop}\n");
	ASSERT(p != NULL);
	const char *want[] = {"a", "b", "c", "d", "e"};
	for (size_t i = 0; i < p->n_stages; i++)
		ASSERT_STREQ(p->stages[p->order[i]].name, want[i]);
	/* and the general property: each stage comes after all it needs */
	for (size_t i = 0; i < p->n_stages; i++) {
		const struct pipeline_stage *st = &p->stages[p->order[i]];
		for (size_t k = 0; k < st->n_needs; k++) {
			size_t pos = 0;
			while (p->order[pos] != st->need_idx[k])
				pos++;
			ASSERT_OP_INT(pos, <, i);
		}
	}
	pipeline_free(p);
}

TEST(finalize_reports_cycles_by_index)
{
	pipeline_t *p = pipeline_new();
	struct pipeline_stage *st;
	struct pipeline_dag_error de;
	ASSERT_EQ_INT(pipeline_add_stage(p, "x", &st), 0);
	ASSERT_EQ_INT(pipeline_stage_add_need(st, "y"), 0);
	ASSERT_EQ_INT(pipeline_add_stage(p, "y", &st), 0);
	ASSERT_EQ_INT(pipeline_stage_add_need(st, "x"), 0);
	ASSERT_EQ_INT(pipeline_finalize(p, &de), AT_EUNPROCESSABLE);
	ASSERT_STREQ(de.message, "dependency cycle: x needs y needs x");
	ASSERT_EQ_INT(de.stage, 1);
	ASSERT_EQ_INT(de.need, 0);
	pipeline_free(p);
	pipeline_free(NULL);
}

/* ---- canonical JSON and the hash ---- */

static const char *base_yaml = "pipeline: p\n"
			       "model: m\n"
			       "triggers: {every: 90m, new_sketches: 10}\n"
			       "stages:\n"
			       "  collect: {}\n"
			       "  train:\n"
			       "    needs: [collect, prepare]\n"
			       "    params: {steps: 100, lr: 0.001, model: {gen_dim: 8, n_res: 1}}\n"
			       "  prepare:\n"
			       "    needs: [collect]\n";

TEST(hash_ignores_comments_layout_order_and_defaults)
{
	char a[65], b[65];
	hash_of(base_yaml, a);
	/* same meaning: comments, block vs flow, key and stage order, needs order,
	 * 1h30m for 90m, 1e-3 for 0.001, defaults spelled out */
	hash_of("# a comment\n"
		"stages:\n"
		"  prepare: { needs: [collect], kind: prepare }   # trailing comment\n"
		"  train:\n"
		"    params:\n"
		"      model: {n_res: 1, gen_dim: 8}\n"
		"      lr: 1e-3\n"
		"      steps: 100\n"
		"      warm_start: production\n"
		"    needs: [prepare, collect]\n"
		"    retries: 1\n"
		"  collect:\n"
		"triggers:\n"
		"  manual: true\n"
		"  new_sketches: 10\n"
		"  every: 1h30m\n"
		"model: m\n"
		"concurrency: 1\n"
		"pipeline: p\n",
		b);
	ASSERT_STREQ(a, b);
}

TEST(notify_targets_parse)
{
	pipeline_t *p = parse_ok("pipeline: p\nmodel: m\nstages:\n  a: {kind: noop}\nnotify:\n"
				 "  - {url: 'https://hooks.example/a', secret_env: HOOK_A}\n"
				 "  - {url: 'http://127.0.0.1:9/b', events: [gate.failed], secret_env: HOOK_B}\n");
	ASSERT(p != NULL);
	ASSERT_EQ_INT(json_array_size(p->notify), 2);
	json_t *j = pipeline_to_json(p);
	ASSERT(j != NULL);
	json_t *n = json_object_get(j, "notify");
	ASSERT_EQ_INT(json_array_size(n), 2);
	/* events absent: every kind a pipeline may ask for */
	ASSERT_EQ_INT(json_array_size(json_object_get(json_array_get(n, 0), "events")), 5);
	ASSERT_STREQ(json_string_value(json_array_get(json_object_get(json_array_get(n, 1), "events"), 0)),
		     "gate.failed");
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(n, 1), "secret_env")), "HOOK_B");
	json_decref(j);
	pipeline_free(p);
	/* without the key, the JSON has none (so older pipelines keep their hash) */
	p = parse_ok("pipeline: p\nmodel: m\nstages:\n  a: {kind: noop}\n");
	ASSERT(p != NULL && p->notify == NULL);
	j = pipeline_to_json(p);
	ASSERT(j != NULL && json_object_get(j, "notify") == NULL);
	json_decref(j);
	pipeline_free(p);
}

TEST(hash_changes_with_content)
{
	char a[65], b[65];
	hash_of(base_yaml, a);
	const char *edits[][2] = {
		{"steps: 100", "steps: 101"},
		{"lr: 0.001", "lr: 0.002"},
		{"every: 90m", "every: 91m"},
		{"model: m\n", "model: n\n"},
		{"gen_dim: 8", "gen_dim: 9"},
		{"  collect: {}\n", "  collect: {timeout: 2h}\n"},
		{"  collect: {}\n", "  collect: {}\n  evaluate: {needs: [train], gate: [{metric: kid, max: 1}]}\n"},
	};
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		char text[1024];
		const char *at = strstr(base_yaml, edits[i][0]);
		ASSERT(at != NULL);
		snprintf(text, sizeof text, "%.*s%s%s", (int)(at - base_yaml), base_yaml, edits[i][1],
			 at + strlen(edits[i][0]));
		hash_of(text, b);
		if (strcmp(a, b) == 0)
			TEST_FAIL_("edit %zu (%s -> %s) kept the hash", i, edits[i][0], edits[i][1]);
	}
}

TEST(canonical_json_format)
{
	json_t *j = json_pack("{s:f, s:f, s:f, s:I, s:s, s:[b, n], s:{s:i, s:i}}", "r1", 0.1, "r2", 1.0, "r3", 1e-4,
			      "i", (json_int_t)-5, "s", "a\"b\\c\n\x01é", "arr", 1, "obj", "z", 1, "a", 2);
	ASSERT(j != NULL);
	struct at_buf b;
	at_buf_init(&b, 0);
	ASSERT_EQ_INT(pipeline_json_canonical(j, &b), 0);
	ASSERT_STREQ(b.data, "{\"arr\":[true,null],\"i\":-5,\"obj\":{\"a\":2,\"z\":1},\"r1\":0.1,\"r2\":1.0,"
			     "\"r3\":0.0001,\"s\":\"a\\\"b\\\\c\\n\\u0001é\"}");
	at_buf_free(&b);
	json_decref(j);

	/* pipeline_to_json has the documented shape */
	pipeline_t *p = parse_ok(base_yaml);
	json_t *pj = pipeline_to_json(p);
	ASSERT(pj != NULL);
	ASSERT_EQ_INT(json_integer_value(json_object_get(pj, "schema")), PIPELINE_SCHEMA_VERSION);
	ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(pj, "triggers"), "every_ms")), 5400000);
	json_t *needs = json_object_get(json_object_get(json_object_get(pj, "stages"), "train"), "needs");
	ASSERT_STREQ(json_string_value(json_array_get(needs, 0)), "collect");
	ASSERT_STREQ(json_string_value(json_array_get(needs, 1)), "prepare");
	json_decref(pj);
	pipeline_free(p);

	/* a gate rule carries "slice" only when it has one (older pipelines keep their hash) */
	char with[1024];
	snprintf(with, sizeof with,
		 "%s  evaluate:\n    needs: [train]\n    gate:\n"
		 "      - {metric: kid, max: 1}\n      - {metric: kid, slice: contributions, max_regression: 0.02}\n",
		 base_yaml);
	p = parse_ok(with);
	pj = pipeline_to_json(p);
	ASSERT(pj != NULL);
	json_t *gate = json_object_get(json_object_get(json_object_get(pj, "stages"), "evaluate"), "gate");
	ASSERT_EQ_INT(json_array_size(gate), 2);
	ASSERT(json_object_get(json_array_get(gate, 0), "slice") == NULL);
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(gate, 1), "slice")), "contributions");
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(gate, 1), "op")), "max_regression");
	json_decref(pj);
	pipeline_free(p);
}

/* ---- the README ---- */

#define README_BEGIN "<!-- BEGIN SCHEMA: generated by pipeline_yaml_reference(); do not edit by hand -->\n"
#define README_END "<!-- END SCHEMA -->"

/*
 * pipelines/README.md embeds the reference generated from the schema table.
 * ATELIER_UPDATE_README=1 rewrites that section instead of failing.
 */
TEST(readme_matches_schema_table)
{
	char path[1024];
	size_t len;
	root_path(path, sizeof path, "pipelines/README.md");
	char *md = slurp(path, &len);
	ASSERT(md != NULL);
	struct at_buf gen;
	at_buf_init(&gen, 0);
	ASSERT_EQ_INT(pipeline_yaml_reference(&gen), 0);
	char *begin = strstr(md, README_BEGIN), *end = strstr(md, README_END);
	ASSERT(begin && end && end > begin);
	begin += strlen(README_BEGIN);
	bool same = (size_t)(end - begin) == gen.len && memcmp(begin, gen.data, gen.len) == 0;
	if (!same && getenv("ATELIER_UPDATE_README")) {
		FILE *f = fopen(path, "wb");
		ASSERT(f != NULL);
		fwrite(md, 1, (size_t)(begin - md), f);
		fwrite(gen.data, 1, gen.len, f);
		fwrite(end, 1, strlen(end), f);
		ASSERT_EQ_INT(fclose(f), 0);
		same = true;
	}
	if (!same)
		TEST_FAIL_("pipelines/README.md's schema section differs from pipeline_yaml_reference(); "
			   "rerun this test with ATELIER_UPDATE_README=1 and commit the README");
	/* every key in the generated table is therefore in the README; make sure the
	 * table itself names the keys the loader knows */
	ASSERT_CONTAINS(gen.data, "| `retries` |");
	ASSERT_CONTAINS(gen.data, "| `triggers.every` |");
	ASSERT_CONTAINS(gen.data, "| `photo_to_sketch.canny_high` |");
	at_buf_free(&gen);
	free(md);
}

RUN_TESTS(example_sketch2paint_loads, notify_targets_parse, example_tiny_loads, missing_file_is_eio,
	  defaults_are_filled_in, kind_table_round_trips, model_params_pass_through, error_cases,
	  bad_arguments_and_limits, truncations_never_crash, dag_order_is_topological_and_deterministic,
	  finalize_reports_cycles_by_index, hash_ignores_comments_layout_order_and_defaults, hash_changes_with_content,
	  canonical_json_format, readme_matches_schema_table, deep_nesting_is_refused_fast, node_count_is_refused_fast)
