/*
 * pipeline.h — the runtime pipeline object: what the scheduler runs.
 *
 * A pipeline_t is built by pipeline_yaml.c (the only code that sees YAML) and
 * is immutable once pipeline_finalize() has succeeded: the scheduler reads its
 * fields, never writes them. Every string and json_t inside is owned by the
 * pipeline and released by pipeline_free().
 *
 * Identity: pipeline_to_canonical() serialises the *meaning* of a pipeline
 * (defaults filled in, keys sorted, `needs` sorted, fixed number formatting),
 * so two YAML texts that differ only in comments, whitespace, key order or
 * spelled-out defaults give the same bytes and the same pipeline_hash().
 * Applying the same YAML twice therefore creates no new version.
 */
#ifndef ATELIER_PIPELINE_H
#define ATELIER_PIPELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "stage_kind.h"

/* Bumped when the canonical JSON changes shape (changes every hash). */
#define PIPELINE_SCHEMA_VERSION 2

/*
 * The stage kinds, one enum value per row of lib/stage_kind.h (which also
 * makes the worker's handler table). A stage's kind decides which worker code
 * runs it and which params are valid; it defaults to the stage's own name.
 */
enum pipeline_kind {
#define PIPELINE_KIND_ENUM(e, fn, name, job, test, cache, doc) PIPELINE_KIND_##e,
	STAGE_KIND_MAP(PIPELINE_KIND_ENUM)
#undef PIPELINE_KIND_ENUM
		PIPELINE_KIND_COUNT_
};

/* "train" for PIPELINE_KIND_TRAIN; "?" for an out-of-range value. */
const char *pipeline_kind_name(enum pipeline_kind kind);
/* The kind called name, or -1. */
int pipeline_kind_from_name(const char *name);
/* Whether the kind exists only for tests (sleep, fail, crash, noop). */
bool pipeline_kind_is_test_only(enum pipeline_kind kind);

/* X(ENUM, "yaml key", doc) — how a gate rule compares a metric. */
#define PIPELINE_GATE_OP_MAP(X)                                                       \
	X(MIN, "min", "candidate value >= threshold")                                 \
	X(MAX, "max", "candidate value <= threshold")                                 \
	X(MAX_REGRESSION, "max_regression",                                           \
	  "candidate may be worse than the champion by at most threshold (absolute)") \
	X(MIN_IMPROVEMENT, "min_improvement", "candidate must beat the champion by at least threshold (absolute)")

enum pipeline_gate_op {
#define PIPELINE_GATE_OP_ENUM(e, name, doc) PIPELINE_GATE_##e,
	PIPELINE_GATE_OP_MAP(PIPELINE_GATE_OP_ENUM)
#undef PIPELINE_GATE_OP_ENUM
		PIPELINE_GATE_OP_COUNT_
};

const char *pipeline_gate_op_name(enum pipeline_gate_op op);
int pipeline_gate_op_from_name(const char *name);

struct pipeline_gate_rule {
	char *metric; /* e.g. "kid" */
	enum pipeline_gate_op op;
	double threshold;
	char *slice; /* a holdout slice (lib/slice.h), or NULL: the whole holdout set */
};

struct pipeline_stage {
	char *name; /* unique within the pipeline, [a-z0-9_-]{1,63} */
	enum pipeline_kind kind;
	char **needs;     /* names of the stages this one waits for, as written */
	size_t *need_idx; /* the same, as indices into pipeline.stages (after finalize) */
	size_t n_needs;
	json_t *params;                  /* always a JSON object, defaults filled in; for the worker */
	int64_t gpu;                     /* GPUs the job needs (0 = CPU is fine) */
	int64_t cpu;                     /* CPU cores the job wants */
	int64_t workers;                 /* train: ranks of a data-parallel gang (1 = one process) */
	int64_t timeout_ms;              /* one attempt is killed after this long */
	int64_t retries;                 /* extra attempts after the first fails */
	struct pipeline_gate_rule *gate; /* evaluate stages only; all rules must pass */
	size_t n_gate;
	bool cache; /* the step cache may lend this stage an identical job's result */
};

struct pipeline_triggers {
	int64_t new_sketches; /* run after this many accepted training sketches; 0 = off */
	int64_t every_ms;     /* run at this interval; 0 = off */
	int64_t deletions;    /* run after this many withdrawals touching production's data; 0 = off */
	bool manual;          /* `atelier run` / POST .../runs allowed */
};

typedef struct pipeline {
	char *name;          /* the pipeline's identity, [a-z0-9_-]{1,63} */
	char *description;   /* never NULL ("" when absent) */
	char *model;         /* the registry's model name */
	int64_t concurrency; /* max active runs; further triggers coalesce into one queued run */
	struct pipeline_triggers triggers;
	json_t *notify;                /* webhook targets [{url, events[], secret_env}] (notify.c); NULL when absent */
	struct pipeline_stage *stages; /* in the order the YAML declared them */
	size_t n_stages;
	size_t *order; /* a topological order: indices into stages, every stage after its needs
			  (ties broken by name, so the order is deterministic); after finalize */
} pipeline_t;

/* An empty pipeline (no name, no stages). NULL when out of memory. */
pipeline_t *pipeline_new(void);
/* Releases everything the pipeline owns. pipeline_free(NULL) is a no-op. */
void pipeline_free(pipeline_t *p);

/*
 * Appends a stage called name (copied) with empty needs/params and zeroed
 * settings; *out points into p->stages and stays valid until the next add.
 */
int pipeline_add_stage(pipeline_t *p, const char *name, struct pipeline_stage **out) AT_MUST_CHECK;
/* Appends name (copied) to st->needs. */
int pipeline_stage_add_need(struct pipeline_stage *st, const char *name) AT_MUST_CHECK;
/* Appends a gate rule; metric and slice (NULL: overall) are copied. */
int pipeline_stage_add_gate(struct pipeline_stage *st, const char *metric, enum pipeline_gate_op op, double threshold,
			    const char *slice) AT_MUST_CHECK;

/* The stage called name, or NULL. */
struct pipeline_stage *pipeline_stage_find(const pipeline_t *p, const char *name);
/* Index of the stage called name, or -1. */
long pipeline_stage_index(const pipeline_t *p, const char *name);

/* What went wrong in pipeline_finalize(), for the loader to point at. */
struct pipeline_dag_error {
	size_t stage;      /* index of the stage whose needs entry is at fault */
	size_t need;       /* index into that stage's needs */
	char message[256]; /* e.g. `dependency cycle: a -> b -> a` */
};

/*
 * Resolves needs to indices and computes p->order. Fails with AT_EUNPROCESSABLE
 * on a need that names no stage, a duplicate need, or a cycle (the message
 * names the cycle path); err may be NULL.
 */
int pipeline_finalize(pipeline_t *p, struct pipeline_dag_error *err) AT_MUST_CHECK;

/*
 * The pipeline's content as a new JSON object (caller owns the reference):
 *   {"schema":2,"pipeline":..,"description":..,"model":..,"concurrency":..,
 *    "triggers":{"new_sketches":N|null,"every_ms":N|null,"manual":bool[,"deletions":N]},
 *    "stages":{NAME:{"kind":..,"needs":[sorted],"params":{..},
 *                    "resources":{"gpu":N,"cpu":N[,"workers":N when > 1]},"timeout_ms":N,"retries":N,"cache":bool,
 *                    "gate":[{"metric":..,"op":..,"threshold":X,"slice":..(only when set)}]}}}
 * NULL when out of memory.
 */
json_t *pipeline_to_json(const pipeline_t *p);
/*
 * The canonical text of a JSON value: keys sorted bytewise, no whitespace,
 * integers as integers, reals in the shortest form that reads back to the same
 * double (always with a '.' or an exponent), strings in UTF-8 with only '"',
 * '\\' and control characters escaped. Independent of the jansson version.
 */
int pipeline_json_canonical(const json_t *j, struct at_buf *out) AT_MUST_CHECK;
/* pipeline_json_canonical(pipeline_to_json(p)), appended to out. */
int pipeline_to_canonical(const pipeline_t *p, struct at_buf *out) AT_MUST_CHECK;
/* sha256 of the canonical JSON, as 64 lowercase hex digits + NUL. */
int pipeline_hash(const pipeline_t *p, char hex[65]) AT_MUST_CHECK;

#endif
