/*
 * test_jobs_params.c — the workers read each stage kind's params exactly as
 * atelierd's YAML schema gives them (workers/params.h), with no defaults of
 * their own: every kind's canonical default params (a pipeline with one stage
 * of each kind of lib/stage_kind.h, nothing set) go through that kind's
 * reader, which must find every key it needs and read every key the schema
 * gives. A worker reading a key the schema lacks, or ignoring one it has, or
 * keeping a silent fallback for a missing one, fails here.
 */
#include <stdio.h>
#include <string.h>

#include "../../orchestrator/pipeline.h" /* the Makefile gives C code -Ilib only */
#include "../../orchestrator/pipeline_yaml.h"
#include "../../workers/params.h"
#include "stage_kind.h"
#include "test.h"

/* Every stage kind, each defaulting every param. */
static json_t *canonical_stages(void)
{
	char yaml[2048];
	size_t off = (size_t)snprintf(yaml, sizeof yaml, "pipeline: every-kind\nmodel: m\nstages:\n");
#define STAGE_YAML(e, fn, name, job, test, cache, doc) \
	off += (size_t)snprintf(yaml + off, sizeof yaml - off, "  %s: {}\n", name);
	STAGE_KIND_MAP(STAGE_YAML)
#undef STAGE_YAML
	ASSERT(off < sizeof yaml);
	pipeline_t *p = NULL;
	struct pipeline_error err;
	int rc = pipeline_yaml_parse("every-kind.yaml", yaml, off, &p, &err);
	if (rc < 0)
		TEST_FAIL_("%s", err.text);
	json_t *j = pipeline_to_json(p);
	ASSERT(j != NULL);
	json_t *stages = json_incref(json_object_get(j, "stages"));
	json_decref(j);
	pipeline_free(p);
	return stages;
}

/* The dotted paths of params' leaves (an empty object is a leaf: "model"). */
static void leaves(json_t *obj, const char *prefix, json_t *out)
{
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		char path[256];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k);
		if (json_is_object(v) && json_object_size(v) > 0)
			leaves(v, path, out);
		else
			json_array_append_new(out, json_string(path));
	}
}

/* Removes the leaf at a dotted path from obj. */
static void remove_path(json_t *obj, const char *path)
{
	const char *dot = strchr(path, '.');
	if (!dot) {
		json_object_del(obj, path);
		return;
	}
	char key[128];
	snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
	remove_path(json_object_get(obj, key), dot + 1);
}

/* One kind's reader on {"params": params}; *seen (new) gets the paths read. */
#define READ_KIND(e, fn, name, job, test, cache, doc) \
	if (strcmp(kind, name) == 0) {                \
		struct fn##_params out;               \
		return fn##_params_read(r, &out);     \
	}
static int read_kind(const char *kind, struct params_reader *r)
{
	STAGE_KIND_MAP(READ_KIND)
	TEST_FAIL_("no reader for kind %s", kind);
	return -1;
}
#undef READ_KIND

static int run_reader(const char *kind, json_t *params, json_t **seen, char *why, size_t whylen)
{
	json_t *payload = json_pack("{s:O}", "params", params);
	struct params_reader r;
	params_reader_init(&r, kind, payload);
	r.seen = json_object();
	int rc = read_kind(kind, &r);
	snprintf(why, whylen, "%s", r.why);
	if (seen)
		*seen = json_incref(r.seen);
	json_decref(r.seen);
	json_decref(payload);
	return rc;
}

static int seen_path(json_t *seen, const char *path)
{
	char p[256];
	snprintf(p, sizeof p, "%s", path);
	for (;;) {
		if (json_object_get(seen, p))
			return 1;
		char *dot = strrchr(p, '.');
		if (!dot)
			return 0;
		*dot = 0; /* a whole sub-object read at once ("model") covers its keys */
	}
}

TEST(every_kind_reads_its_canonical_defaults_and_every_key)
{
	json_t *stages = canonical_stages();
	size_t kinds = 0;
#define CHECK_KIND(e, fn, name, job, test, cache, doc)                                                        \
	{                                                                                                     \
		json_t *params = json_object_get(json_object_get(stages, name), "params"), *seen = NULL;      \
		char why[256];                                                                                \
		ASSERT(json_is_object(params));                                                               \
		if (run_reader(name, params, &seen, why, sizeof why) < 0)                                     \
			TEST_FAIL_("kind %s: its canonical default params fail the worker: %s", name, why);   \
		json_t *paths = json_array();                                                                 \
		leaves(params, "", paths);                                                                    \
		size_t i;                                                                                     \
		json_t *pv;                                                                                   \
		json_array_foreach(paths, i, pv) if (!seen_path(seen, json_string_value(pv)))                 \
			TEST_FAIL_("kind %s: the worker never reads params.%s, which the schema gives", name, \
				   json_string_value(pv));                                                    \
		json_decref(paths);                                                                           \
		json_decref(seen);                                                                            \
		kinds++;                                                                                      \
	}
	STAGE_KIND_MAP(CHECK_KIND)
#undef CHECK_KIND
	ASSERT_EQ_INT(kinds, PIPELINE_KIND_COUNT_);
	json_decref(stages);
}

TEST(a_missing_key_is_an_error_naming_it)
{
	json_t *stages = canonical_stages();
	size_t checked = 0;
	const char *kind;
	json_t *st;
	json_object_foreach(stages, kind, st)
	{
		json_t *params = json_object_get(st, "params"), *paths = json_array();
		leaves(params, "", paths);
		size_t i;
		json_t *pv;
		json_array_foreach(paths, i, pv)
		{
			const char *path = json_string_value(pv);
			/* train's GPU preset has no defaults: each key it leaves out
			 * keeps the stage's (pipelines/README.md), so gpu.* may go */
			if (strcmp(kind, "train") == 0 && strncmp(path, "gpu.", 4) == 0)
				continue;
			json_t *cut = json_deep_copy(params);
			remove_path(cut, path);
			char why[256];
			if (run_reader(kind, cut, NULL, why, sizeof why) == 0)
				TEST_FAIL_("kind %s: params.%s removed, the worker still reads its params (a default "
					   "of its own?)",
					   kind, path);
			char want[160];
			snprintf(want, sizeof want, "params.%s is missing", path);
			ASSERT_CONTAINS(why, want);
			json_decref(cut);
			checked++;
		}
		json_decref(paths);
	}
	ASSERT_OP_INT(checked, >=, 25); /* collect 4, prepare 8, train 8, evaluate 2, promote 3, ... */
	/* no params at all: the first key is named */
	char why[256];
	json_t *none = json_object();
	ASSERT_EQ_INT(run_reader("train", none, NULL, why, sizeof why), AT_EINVAL);
	ASSERT_CONTAINS(why, "train: params.steps is missing");
	json_decref(none);
	json_decref(stages);
}

TEST(wrong_types_are_errors)
{
	json_t *stages = canonical_stages();
	json_t *p = json_deep_copy(json_object_get(json_object_get(stages, "prepare"), "params"));
	json_object_set_new(json_object_get(p, "augment"), "flip", json_string("yes"));
	char why[256];
	ASSERT_EQ_INT(run_reader("prepare", p, NULL, why, sizeof why), AT_EINVAL);
	ASSERT_CONTAINS(why, "params.augment.flip must be true or false");
	json_decref(p);
	p = json_deep_copy(json_object_get(json_object_get(stages, "train"), "params"));
	json_object_set_new(p, "steps", json_string("many"));
	ASSERT_EQ_INT(run_reader("train", p, NULL, why, sizeof why), AT_EINVAL);
	ASSERT_CONTAINS(why, "params.steps must be a number");
	json_decref(p);
	json_decref(stages);
}

RUN_TESTS(every_kind_reads_its_canonical_defaults_and_every_key, a_missing_key_is_an_error_naming_it,
	  wrong_types_are_errors)
