/*
 * params.h — what each job kind reads from its stage's params.
 *
 * A stage's params reach the worker as atelierd's canonical JSON gives them:
 * every key present, defaults filled in from the YAML schema
 * (orchestrator/pipeline_yaml.c), which is the only copy of a default. So
 * the worker keeps none: a key that is missing or of the wrong type is the
 * job's error, naming the key (a job enqueued by hand must carry every key).
 *
 * One reader per kind, named <fn>_params_read after lib/stage_kind.h's fn
 * column, so tests/unit/test_jobs_params.c can run each kind's canonical
 * default params through it and check that every key the schema gives is
 * read and none is missing.
 */
#ifndef ATELIER_WORKERS_PARAMS_H
#define ATELIER_WORKERS_PARAMS_H

#include <jansson.h>

#include "err.h"

struct params_reader {
	const char *kind;  /* for messages */
	json_t *root;      /* the object read (borrowed) */
	const char *where; /* how messages name root: "params" or "payload" */
	int rc;            /* 0, or AT_EINVAL from the first bad key on (later reads return 0) */
	char why[256];     /* the first error, naming the key */
	json_t *seen;      /* NULL, or an object that records each key path read (tests) */
};

/* Reads payload.params; a payload without a params object is an error. */
void params_reader_init(struct params_reader *r, const char *kind, json_t *payload);
/* Reads obj (for test kinds enqueued without params, and train's preset). */
void params_reader_init_obj(struct params_reader *r, const char *kind, json_t *obj);

/* path is a key or dotted keys into sub-objects ("augment.flip"). Numbers
 * read as int are truncated, as JSON has one number type. */
long long params_int(struct params_reader *r, const char *path);
double params_dbl(struct params_reader *r, const char *path);
int params_bool(struct params_reader *r, const char *path);
const char *params_str(struct params_reader *r, const char *path); /* borrowed */
json_t *params_obj(struct params_reader *r, const char *path);     /* borrowed */
/* A key the schema gives no default (it may be absent): the value or NULL. */
json_t *params_opt(struct params_reader *r, const char *path);

/* ---- the kinds (lib/stage_kind.h) ---- */

struct collect_params {
	long long min_sketches, min_paintings, max_items;
	double replay;
};
struct prepare_params {
	long long size;
	int flip;
	double jitter;
	double blur_sigma, canny_low, canny_high, min_ink; /* photo_to_sketch */
	long long dilate;
};
/* Read from the effective params: the stage's, params.gpu's keys on top when
 * the job trains on a GPU (workers/jobs_train.c). */
struct train_params {
	long long steps, batch, checkpoint_every, metrics_every, seed;
	const char *warm_start; /* "production" or "scratch"; borrowed */
	double lr;
	json_t *model; /* the architecture keys (an object; borrowed) */
	json_t *gpu;   /* the GPU preset (an object; its keys have no defaults: one
			  absent keeps the stage's value); borrowed */
};
struct evaluate_params {
	long long samples, styles;
};
struct promote_params {
	double canary_bake_ms, max_error_rate, max_p95_ms;
	long long min_canary_nodes; /* -1: unset (1 when a node follows the canary channel, else 0) */
};
/* Test kinds read payload.params (a pipeline stage) or, enqueued directly by
 * the queue's tests, the payload itself; checkpoint, ignore_cancel and retry
 * are the queue tests' own switches (absent: off, off, retry). */
struct test_sleep_params {
	long long ms; /* payload.ms, else params.duration (YAML durations are ms) */
	int checkpoint, ignore_cancel;
};
struct test_fail_params {
	const char *message;
	int no_retry; /* "retry": false */
};
struct test_crash_params {
	long long after_ms;
};
struct test_noop_params {
	char none; /* noop has no params */
};

/* Each returns r->rc (0 or AT_EINVAL with r->why naming the key). */
int collect_params_read(struct params_reader *r, struct collect_params *p) AT_MUST_CHECK;
int prepare_params_read(struct params_reader *r, struct prepare_params *p) AT_MUST_CHECK;
int train_params_read(struct params_reader *r, struct train_params *p) AT_MUST_CHECK;
int evaluate_params_read(struct params_reader *r, struct evaluate_params *p) AT_MUST_CHECK;
int promote_params_read(struct params_reader *r, struct promote_params *p) AT_MUST_CHECK;
int test_sleep_params_read(struct params_reader *r, struct test_sleep_params *p) AT_MUST_CHECK;
int test_fail_params_read(struct params_reader *r, struct test_fail_params *p) AT_MUST_CHECK;
int test_crash_params_read(struct params_reader *r, struct test_crash_params *p) AT_MUST_CHECK;
int test_noop_params_read(struct params_reader *r, struct test_noop_params *p) AT_MUST_CHECK;

#endif
