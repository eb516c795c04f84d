/*
 * pipeline.c — the runtime pipeline object: construction helpers, the stage
 * DAG (needs resolution, cycle detection, topological order) and the
 * canonical JSON that gives a pipeline its identity (see pipeline.h).
 *
 * Nothing here knows about YAML; errors name stages and needs by index so the
 * loader can point at the line that caused them.
 */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

/* ---- kinds and gate operators ---- */

static const struct {
	const char *name;
	bool test_only;
} kinds[] = {
#define PIPELINE_KIND_ROW(e, fn, name, job, test, cache, doc) {name, test},
	STAGE_KIND_MAP(PIPELINE_KIND_ROW)
#undef PIPELINE_KIND_ROW
};

const char *pipeline_kind_name(enum pipeline_kind kind)
{
	if ((unsigned)kind >= PIPELINE_KIND_COUNT_)
		return "?";
	return kinds[kind].name;
}

int pipeline_kind_from_name(const char *name)
{
	for (size_t i = 0; i < PIPELINE_KIND_COUNT_; i++)
		if (strcmp(kinds[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool pipeline_kind_is_test_only(enum pipeline_kind kind)
{
	return (unsigned)kind < PIPELINE_KIND_COUNT_ && kinds[kind].test_only;
}

static const char *const gate_ops[] = {
#define PIPELINE_GATE_OP_ROW(e, name, doc) name,
	PIPELINE_GATE_OP_MAP(PIPELINE_GATE_OP_ROW)
#undef PIPELINE_GATE_OP_ROW
};

const char *pipeline_gate_op_name(enum pipeline_gate_op op)
{
	if ((unsigned)op >= PIPELINE_GATE_OP_COUNT_)
		return "?";
	return gate_ops[op];
}

int pipeline_gate_op_from_name(const char *name)
{
	for (size_t i = 0; i < PIPELINE_GATE_OP_COUNT_; i++)
		if (strcmp(gate_ops[i], name) == 0)
			return (int)i;
	return -1;
}

/* ---- construction ---- */

pipeline_t *pipeline_new(void)
{
	pipeline_t *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->description = strdup("");
	if (!p->description) {
		free(p);
		return NULL;
	}
	return p;
}

static void stage_release(struct pipeline_stage *st)
{
	free(st->name);
	for (size_t i = 0; i < st->n_needs; i++)
		free(st->needs[i]);
	free(st->needs);
	free(st->need_idx);
	json_decref(st->params);
	for (size_t i = 0; i < st->n_gate; i++) {
		free(st->gate[i].metric);
		free(st->gate[i].slice);
	}
	free(st->gate);
}

void pipeline_free(pipeline_t *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_stages; i++)
		stage_release(&p->stages[i]);
	free(p->stages);
	free(p->order);
	free(p->name);
	free(p->description);
	free(p->model);
	json_decref(p->notify);
	free(p);
}

int pipeline_add_stage(pipeline_t *p, const char *name, struct pipeline_stage **out)
{
	struct pipeline_stage *v = realloc(p->stages, (p->n_stages + 1) * sizeof *v);
	if (!v)
		return AT_ENOMEM;
	p->stages = v;
	struct pipeline_stage *st = &v[p->n_stages];
	memset(st, 0, sizeof *st);
	st->name = strdup(name);
	st->params = json_object();
	if (!st->name || !st->params) {
		free(st->name);
		json_decref(st->params);
		return AT_ENOMEM;
	}
	p->n_stages++;
	if (out)
		*out = st;
	return 0;
}

int pipeline_stage_add_need(struct pipeline_stage *st, const char *name)
{
	char **v = realloc(st->needs, (st->n_needs + 1) * sizeof *v);
	if (!v)
		return AT_ENOMEM;
	st->needs = v;
	if (!(v[st->n_needs] = strdup(name)))
		return AT_ENOMEM;
	st->n_needs++;
	return 0;
}

int pipeline_stage_add_gate(struct pipeline_stage *st, const char *metric, enum pipeline_gate_op op, double threshold,
			    const char *slice)
{
	struct pipeline_gate_rule *v = realloc(st->gate, (st->n_gate + 1) * sizeof *v);
	if (!v)
		return AT_ENOMEM;
	st->gate = v;
	v[st->n_gate].slice = NULL;
	if (slice && !(v[st->n_gate].slice = strdup(slice)))
		return AT_ENOMEM;
	if (!(v[st->n_gate].metric = strdup(metric))) {
		free(v[st->n_gate].slice);
		return AT_ENOMEM;
	}
	v[st->n_gate].op = op;
	v[st->n_gate].threshold = threshold;
	st->n_gate++;
	return 0;
}

long pipeline_stage_index(const pipeline_t *p, const char *name)
{
	for (size_t i = 0; i < p->n_stages; i++)
		if (strcmp(p->stages[i].name, name) == 0)
			return (long)i;
	return -1;
}

struct pipeline_stage *pipeline_stage_find(const pipeline_t *p, const char *name)
{
	long i = pipeline_stage_index(p, name);
	return i < 0 ? NULL : &p->stages[i];
}

/* ---- the DAG ---- */

enum { WHITE = 0, GRAY, BLACK };

struct dfs {
	const pipeline_t *p;
	unsigned char *color;
	size_t *path; /* stages on the current DFS path */
	size_t depth;
	struct pipeline_dag_error *err;
};

/*
 * Depth-first along needs edges; a GRAY target closes a cycle, which is the
 * path from that target's position to here. Recursion depth is bounded by the
 * stage count, which the loader caps through its node budget.
 */
static int dfs_visit(struct dfs *d, size_t s)
{
	const struct pipeline_stage *st = &d->p->stages[s];
	d->color[s] = GRAY;
	d->path[d->depth++] = s;
	for (size_t k = 0; k < st->n_needs; k++) {
		size_t t = st->need_idx[k];
		if (d->color[t] == BLACK)
			continue;
		if (d->color[t] == GRAY) {
			size_t from = 0;
			while (d->path[from] != t)
				from++;
			if (d->err) {
				struct at_buf b;
				at_buf_init(&b, sizeof d->err->message - 1);
				int rc = at_buf_addstr(&b, "dependency cycle: ");
				for (size_t i = from; i < d->depth && rc == 0; i++)
					rc = at_buf_printf(&b, "%s needs ", d->p->stages[d->path[i]].name);
				if (rc == 0)
					rc = at_buf_addstr(&b, d->p->stages[t].name);
				snprintf(d->err->message, sizeof d->err->message, "%s%s",
					 b.data ? b.data : "dependency cycle", rc == 0 ? "" : " ...");
				at_buf_free(&b);
				d->err->stage = s;
				d->err->need = k;
			}
			return AT_EUNPROCESSABLE;
		}
		int rc = dfs_visit(d, t);
		if (rc < 0)
			return rc;
	}
	d->depth--;
	d->color[s] = BLACK;
	return 0;
}

int pipeline_finalize(pipeline_t *p, struct pipeline_dag_error *err)
{
	size_t n = p->n_stages;
	int rc = 0;
	unsigned char *color = NULL;
	size_t *path = NULL, *pending = NULL, *order = NULL;

	for (size_t s = 0; s < n; s++) {
		struct pipeline_stage *st = &p->stages[s];
		free(st->need_idx);
		st->need_idx = calloc(st->n_needs ? st->n_needs : 1, sizeof *st->need_idx);
		if (!st->need_idx)
			return AT_ENOMEM;
		for (size_t k = 0; k < st->n_needs; k++) {
			long t = pipeline_stage_index(p, st->needs[k]);
			const char *fmt = t < 0 ? "stage \"%s\" needs unknown stage \"%s\"" : NULL;
			for (size_t j = 0; j < k && !fmt; j++)
				if (strcmp(st->needs[j], st->needs[k]) == 0)
					fmt = "stage \"%s\" lists \"%s\" twice in needs";
			if (fmt) {
				if (err) {
					err->stage = s;
					err->need = k;
					snprintf(err->message, sizeof err->message, fmt, st->name, st->needs[k]);
				}
				return AT_EUNPROCESSABLE;
			}
			st->need_idx[k] = (size_t)t;
		}
	}

	color = calloc(n ? n : 1, 1);
	path = calloc(n ? n : 1, sizeof *path);
	pending = calloc(n ? n : 1, sizeof *pending);
	order = calloc(n ? n : 1, sizeof *order);
	if (!color || !path || !pending || !order) {
		rc = AT_ENOMEM;
		goto out;
	}
	struct dfs d = {.p = p, .color = color, .path = path, .err = err};
	for (size_t s = 0; s < n; s++)
		if (color[s] == WHITE && (rc = dfs_visit(&d, s)) < 0)
			goto out;

	/*
	 * Kahn's algorithm, always taking the ready stage with the smallest name:
	 * the order depends only on content, not on the order of the YAML.
	 * Quadratic, which is nothing at the sizes the loader admits.
	 */
	for (size_t s = 0; s < n; s++)
		pending[s] = p->stages[s].n_needs;
	memset(color, 0, n);
	for (size_t i = 0; i < n; i++) {
		long best = -1;
		for (size_t s = 0; s < n; s++)
			if (!color[s] && pending[s] == 0 &&
			    (best < 0 || strcmp(p->stages[s].name, p->stages[best].name) < 0))
				best = (long)s;
		if (best < 0) { /* cannot happen after the DFS; kept as a guard */
			rc = AT_EINTERNAL;
			goto out;
		}
		color[best] = 1;
		order[i] = (size_t)best;
		for (size_t s = 0; s < n; s++)
			for (size_t k = 0; k < p->stages[s].n_needs; k++)
				if (p->stages[s].need_idx[k] == (size_t)best)
					pending[s]--;
	}
	free(p->order);
	p->order = order;
	order = NULL;
out:
	free(order);
	free(pending);
	free(path);
	free(color);
	return rc;
}

/* ---- JSON ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static json_t *stage_to_json(const struct pipeline_stage *st)
{
	json_t *needs = json_array(), *gate = json_array();
	const char **sorted = calloc(st->n_needs ? st->n_needs : 1, sizeof *sorted);
	json_t *o = NULL;
	if (!needs || !gate || !sorted)
		goto out;
	/* needs is a set: its order carries no meaning, so it must not move the hash */
	for (size_t k = 0; k < st->n_needs; k++)
		sorted[k] = st->needs[k];
	qsort(sorted, st->n_needs, sizeof *sorted, cmp_str);
	for (size_t k = 0; k < st->n_needs; k++)
		if (json_array_append_new(needs, json_string(sorted[k])) < 0)
			goto out;
	/* gate order is kept: rules are reported in the order they are written */
	for (size_t g = 0; g < st->n_gate; g++)
		/* "slice" only when set: a pipeline without slice rules keeps its sha256 */
		if (json_array_append_new(gate, json_pack("{s:s, s:s, s:f, s:s*}", "metric", st->gate[g].metric, "op",
							  pipeline_gate_op_name(st->gate[g].op), "threshold",
							  st->gate[g].threshold, "slice", st->gate[g].slice)) < 0)
			goto out;
	o = json_pack("{s:s, s:O, s:O, s:O, s:{s:I, s:I}, s:I, s:I, s:b}", "kind", pipeline_kind_name(st->kind),
		      "needs", needs, "gate", gate, "params", st->params, "resources", "gpu", (json_int_t)st->gpu,
		      "cpu", (json_int_t)st->cpu, "timeout_ms", (json_int_t)st->timeout_ms, "retries",
		      (json_int_t)st->retries, "cache", st->cache);
	/* "workers" only for gangs: a one-process pipeline keeps its sha256 */
	if (o && st->workers > 1 &&
	    json_object_set_new(json_object_get(o, "resources"), "workers", json_integer((json_int_t)st->workers)) <
		    0) {
		json_decref(o);
		o = NULL;
	}
out:
	free(sorted);
	json_decref(needs);
	json_decref(gate);
	return o;
}

static json_t *int_or_null(int64_t v) { return v ? json_integer(v) : json_null(); }

json_t *pipeline_to_json(const pipeline_t *p)
{
	json_t *stages = json_object();
	if (!stages)
		return NULL;
	for (size_t s = 0; s < p->n_stages; s++) {
		json_t *js = stage_to_json(&p->stages[s]);
		if (!js || json_object_set_new(stages, p->stages[s].name, js) < 0) {
			json_decref(stages);
			return NULL;
		}
	}
	json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:I, s:{s:o, s:o, s:b}, s:o}", "schema", PIPELINE_SCHEMA_VERSION,
			      "pipeline", p->name ? p->name : "", "description", p->description ? p->description : "",
			      "model", p->model ? p->model : "", "concurrency", (json_int_t)p->concurrency, "triggers",
			      "new_sketches", int_or_null(p->triggers.new_sketches), "every_ms",
			      int_or_null(p->triggers.every_ms), "manual", (int)p->triggers.manual, "stages", stages);
	/* only when present, so the canonical JSON (and hash) of a pipeline
	 * without it is what it was before the key existed */
	if (j && p->triggers.deletions &&
	    json_object_set_new(json_object_get(j, "triggers"), "deletions", json_integer(p->triggers.deletions)) < 0) {
		json_decref(j);
		return NULL;
	}
	if (j && p->notify && json_array_size(p->notify) && json_object_set(j, "notify", p->notify) < 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static int canon_string(const char *s, size_t len, struct at_buf *out)
{
	int rc = at_buf_add(out, "\"", 1);
	size_t run = 0; /* bytes since the last escape, appended in one go */
	for (size_t i = 0; i < len && rc == 0; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			run++;
			continue;
		}
		rc = at_buf_add(out, s + i - run, run);
		run = 0;
		if (rc < 0)
			break;
		switch (c) {
		case '"': rc = at_buf_addstr(out, "\\\""); break;
		case '\\': rc = at_buf_addstr(out, "\\\\"); break;
		case '\n': rc = at_buf_addstr(out, "\\n"); break;
		case '\t': rc = at_buf_addstr(out, "\\t"); break;
		case '\r': rc = at_buf_addstr(out, "\\r"); break;
		default: rc = at_buf_printf(out, "\\u%04x", c); break;
		}
	}
	if (rc == 0)
		rc = at_buf_add(out, s + len - run, run);
	if (rc == 0)
		rc = at_buf_add(out, "\"", 1);
	return rc;
}

/* The shortest %.Ng that reads back as the same double; "1.0", not "1". */
static int canon_real(double v, struct at_buf *out)
{
	char tmp[64];
	if (!isfinite(v))
		return AT_EINVAL;
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	if (!strpbrk(tmp, ".e"))
		return at_buf_printf(out, "%s.0", tmp);
	return at_buf_addstr(out, tmp);
}

static int canon_value(const json_t *j, struct at_buf *out, int depth)
{
	int rc = 0;
	if (depth > 64)
		return AT_ETOOBIG;
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(j), i = 0;
		const char **keys = calloc(n ? n : 1, sizeof *keys);
		const char *key;
		json_t *v;
		if (!keys)
			return AT_ENOMEM;
		json_object_foreach((json_t *)j, key, v) keys[i++] = key;
		qsort(keys, n, sizeof *keys, cmp_str);
		rc = at_buf_add(out, "{", 1);
		for (i = 0; i < n && rc == 0; i++) {
			if (i && (rc = at_buf_add(out, ",", 1)) < 0)
				break;
			if ((rc = canon_string(keys[i], strlen(keys[i]), out)) < 0)
				break;
			if ((rc = at_buf_add(out, ":", 1)) < 0)
				break;
			rc = canon_value(json_object_get(j, keys[i]), out, depth + 1);
		}
		if (rc == 0)
			rc = at_buf_add(out, "}", 1);
		free(keys);
		return rc;
	}
	case JSON_ARRAY:
		rc = at_buf_add(out, "[", 1);
		for (size_t i = 0; i < json_array_size(j) && rc == 0; i++) {
			if (i && (rc = at_buf_add(out, ",", 1)) < 0)
				break;
			rc = canon_value(json_array_get(j, i), out, depth + 1);
		}
		return rc == 0 ? at_buf_add(out, "]", 1) : rc;
	case JSON_STRING: return canon_string(json_string_value(j), json_string_length(j), out);
	case JSON_INTEGER: return at_buf_printf(out, "%lld", (long long)json_integer_value(j));
	case JSON_REAL: return canon_real(json_real_value(j), out);
	case JSON_TRUE: return at_buf_addstr(out, "true");
	case JSON_FALSE: return at_buf_addstr(out, "false");
	case JSON_NULL: return at_buf_addstr(out, "null");
	}
	return AT_EINVAL;
}

int pipeline_json_canonical(const json_t *j, struct at_buf *out)
{
	if (!j)
		return AT_EINVAL;
	return canon_value(j, out, 0);
}

int pipeline_to_canonical(const pipeline_t *p, struct at_buf *out)
{
	json_t *j = pipeline_to_json(p);
	if (!j)
		return AT_ENOMEM;
	int rc = pipeline_json_canonical(j, out);
	json_decref(j);
	return rc;
}

int pipeline_hash(const pipeline_t *p, char hex[65])
{
	struct at_buf b;
	at_buf_init(&b, 0);
	int rc = pipeline_to_canonical(p, &b);
	if (rc == 0)
		rc = at_sha256_hex(b.data, b.len, hex);
	at_buf_free(&b);
	return rc;
}
