/*
 * params.c — see params.h. The readers mirror the YAML schema's tables in
 * orchestrator/pipeline_yaml.c key for key; tests/unit/test_jobs_params.c
 * holds them to it.
 */
#include "params.h"

#include <stdio.h>
#include <string.h>

void params_reader_init_obj(struct params_reader *r, const char *kind, json_t *obj)
{
	memset(r, 0, sizeof *r);
	r->kind = kind;
	r->root = obj;
	r->where = "payload";
	if (!json_is_object(obj)) {
		r->rc = AT_EINVAL;
		snprintf(r->why, sizeof r->why, "%s: the payload is not a JSON object", kind);
	}
}

void params_reader_init(struct params_reader *r, const char *kind, json_t *payload)
{
	params_reader_init_obj(r, kind, json_object_get(payload, "params"));
	r->where = "params";
	if (r->rc < 0)
		snprintf(r->why, sizeof r->why,
			 "%s: payload.params is missing: a stage's params reach the worker with every default filled "
			 "in by atelierd",
			 kind);
}

/* The value at path, or NULL (r->rc set when required). */
static json_t *lookup(struct params_reader *r, const char *path, int required)
{
	if (r->rc < 0)
		return NULL;
	json_t *v = r->root;
	for (const char *p = path; v && *p;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		v = json_is_object(v) ? json_object_getn(v, p, n) : NULL;
		p += n + (dot != NULL);
	}
	if (v && !json_is_null(v)) {
		if (r->seen)
			json_object_set_new(r->seen, path, json_true());
		return v;
	}
	if (required) {
		r->rc = AT_EINVAL;
		snprintf(r->why, sizeof r->why,
			 "%s: %s.%s is missing (atelierd fills in every default; a job enqueued by hand must carry "
			 "them all)",
			 r->kind, r->where, path);
	}
	return NULL;
}

static void wrong_type(struct params_reader *r, const char *path, const char *want)
{
	r->rc = AT_EINVAL;
	snprintf(r->why, sizeof r->why, "%s: %s.%s must be %s", r->kind, r->where, path, want);
}

long long params_int(struct params_reader *r, const char *path)
{
	json_t *v = lookup(r, path, 1);
	if (!v)
		return 0;
	if (!json_is_number(v)) {
		wrong_type(r, path, "a number");
		return 0;
	}
	return json_is_integer(v) ? (long long)json_integer_value(v) : (long long)json_real_value(v);
}

double params_dbl(struct params_reader *r, const char *path)
{
	json_t *v = lookup(r, path, 1);
	if (v && !json_is_number(v))
		wrong_type(r, path, "a number");
	return json_is_number(v) ? json_number_value(v) : 0;
}

int params_bool(struct params_reader *r, const char *path)
{
	json_t *v = lookup(r, path, 1);
	if (v && !json_is_boolean(v))
		wrong_type(r, path, "true or false");
	return json_is_true(v);
}

const char *params_str(struct params_reader *r, const char *path)
{
	json_t *v = lookup(r, path, 1);
	if (v && !json_is_string(v))
		wrong_type(r, path, "a string");
	return json_string_value(v);
}

json_t *params_obj(struct params_reader *r, const char *path)
{
	json_t *v = lookup(r, path, 1);
	if (v && !json_is_object(v)) {
		wrong_type(r, path, "an object");
		return NULL;
	}
	return v;
}

json_t *params_opt(struct params_reader *r, const char *path) { return lookup(r, path, 0); }

/* ---- the kinds: key for key the schema's tables ---- */

int collect_params_read(struct params_reader *r, struct collect_params *p)
{
	p->min_sketches = params_int(r, "min_sketches");
	p->min_paintings = params_int(r, "min_paintings");
	p->max_items = params_int(r, "max_items");
	p->replay = params_dbl(r, "replay");
	return r->rc;
}

int prepare_params_read(struct params_reader *r, struct prepare_params *p)
{
	p->size = params_int(r, "size");
	p->flip = params_bool(r, "augment.flip");
	p->jitter = params_dbl(r, "augment.jitter");
	p->blur_sigma = params_dbl(r, "photo_to_sketch.blur_sigma");
	p->canny_low = params_dbl(r, "photo_to_sketch.canny_low");
	p->canny_high = params_dbl(r, "photo_to_sketch.canny_high");
	p->dilate = params_int(r, "photo_to_sketch.dilate");
	p->min_ink = params_dbl(r, "photo_to_sketch.min_ink");
	return r->rc;
}

int train_params_read(struct params_reader *r, struct train_params *p)
{
	p->steps = params_int(r, "steps");
	p->batch = params_int(r, "batch");
	p->checkpoint_every = params_int(r, "checkpoint_every");
	p->metrics_every = params_int(r, "metrics_every");
	p->seed = params_int(r, "seed");
	p->warm_start = params_str(r, "warm_start");
	p->lr = params_dbl(r, "lr");
	p->model = params_obj(r, "model");
	p->gpu = params_obj(r, "gpu");
	return r->rc;
}

int evaluate_params_read(struct params_reader *r, struct evaluate_params *p)
{
	p->samples = params_int(r, "samples");
	p->styles = params_int(r, "styles");
	return r->rc;
}

int promote_params_read(struct params_reader *r, struct promote_params *p)
{
	p->canary_bake_ms = params_dbl(r, "canary_bake");
	p->max_error_rate = params_dbl(r, "max_error_rate");
	p->max_p95_ms = params_dbl(r, "max_p95_ms");
	p->min_canary_nodes = params_opt(r, "min_canary_nodes") ? params_int(r, "min_canary_nodes") : -1;
	return r->rc;
}

int test_sleep_params_read(struct params_reader *r, struct test_sleep_params *p)
{
	/* the queue tests say "ms"; a pipeline's sleep stage says "duration" */
	json_t *ms = params_opt(r, "ms");
	p->ms = ms ? params_int(r, "ms") : params_int(r, "duration");
	p->checkpoint = json_is_true(params_opt(r, "checkpoint"));
	p->ignore_cancel = json_is_true(params_opt(r, "ignore_cancel"));
	return r->rc;
}

int test_fail_params_read(struct params_reader *r, struct test_fail_params *p)
{
	p->message = params_str(r, "message");
	p->no_retry = json_is_false(params_opt(r, "retry"));
	return r->rc;
}

int test_crash_params_read(struct params_reader *r, struct test_crash_params *p)
{
	p->after_ms = params_int(r, "after");
	return r->rc;
}

int test_noop_params_read(struct params_reader *r, struct test_noop_params *p)
{
	p->none = 0;
	return r->rc;
}
