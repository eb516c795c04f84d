/*
 * pipeline_yaml.c — YAML text to pipeline_t, driven by one schema table.
 *
 * Every key a pipeline file may contain is a row in a `struct field` table:
 * name, type, required, default (written as YAML text and converted by the
 * same code as user input, so the documented default is the applied one),
 * range, optional validator, where the value goes, and a one-line doc. The
 * walker below is generic: it looks keys up in the table (unknown keys are
 * errors, with a "did you mean"), converts and range-checks scalars, fills in
 * defaults, and stores each value either in a C struct (offsetof) or in a JSON
 * object (stage params, which travel to the worker as JSON). The few keys with
 * structure of their own (stages, needs, gate, params, kind) have walkers.
 *
 * Errors: the first one wins and carries libyaml's mark of the offending node
 * (1-based line and column). Bounds: text size, UTF-8 validity, node visits
 * (aliases are shared nodes in libyaml's document, so a naive walk of an alias
 * bomb is exponential and a self-referencing anchor is infinite) and depth.
 *
 * libyaml's document API is used for the walk: it keeps marks on every node,
 * and composing a document is linear in the text even for alias bombs. A
 * first pass over libyaml's events (bounds_pass) caps nesting and node count
 * before any tree is built: the scanner is quadratic in flow nesting depth.
 */
#include "pipeline_yaml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "metric.h"
#include "slice.h"

/* ---- the schema's vocabulary ---- */

enum ftype {
	T_STR,      /* any scalar, as text */
	T_NAME,     /* [a-z0-9_-]{1,63} */
	T_INT,      /* decimal int64 */
	T_FLOAT,    /* finite number; ints are accepted */
	T_BOOL,     /* true / false */
	T_DURATION, /* 500ms, 30s, 1h30m, ... stored as milliseconds */
	T_ENUM,     /* one of choices */
	T_MAP,      /* a nested table (sub) */
	T_CUSTOM,   /* a walker of its own (walk) */
};

struct yctx;
struct field;

struct value {
	int64_t i;     /* T_INT, T_DURATION (ms) */
	double d;      /* T_FLOAT */
	bool b;        /* T_BOOL */
	const char *s; /* T_STR, T_NAME, T_ENUM: borrowed from the node or the table */
	size_t slen;
};

typedef int (*walk_fn)(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base);
typedef int (*validate_fn)(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
			   const struct value *v);

struct schema;
struct field {
	const char *name;
	enum ftype type;
	bool required;
	const char *def; /* default as YAML text; NULL: absent stays absent */
	bool has_min, has_max;
	double min, max;            /* T_DURATION: milliseconds */
	const char *const *choices; /* T_ENUM, NULL-terminated */
	const struct schema *sub;   /* T_MAP */
	walk_fn walk;               /* T_CUSTOM */
	validate_fn validate;
	bool has_off;
	size_t off;           /* where the value goes in the C struct being filled, if has_off */
	const char *type_doc; /* T_CUSTOM: how the README names the type */
	const char *doc;
};

struct schema {
	const char *title;
	const struct field *fields;
	size_t n;
	bool open; /* unknown keys are passed through as JSON instead of rejected */
	int (*check)(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj);
};

#define RANGE(lo, hi) .has_min = true, .min = (lo), .has_max = true, .max = (hi)
#define AT_LEAST(lo) .has_min = true, .min = (lo)
#define AT(type, member) .has_off = true, .off = offsetof(type, member)
#define SCHEMA(t, arr, ...)                                                             \
	{                                                                               \
		.title = t, .fields = arr, .n = sizeof arr / sizeof arr[0], __VA_ARGS__ \
	}
#define MS_S 1000.0
#define MS_D 86400000.0

#define NAME_RULE "[a-z0-9_-]{1,63}"
#define MAX_FIELDS 32

/* ---- the loader's state and errors ---- */

struct stage_marks {
	yaml_mark_t key;    /* the stage's name in `stages:` */
	yaml_mark_t *needs; /* one per needs entry */
	size_t n_needs;
};

struct yctx {
	const char *file;
	yaml_document_t *doc;
	struct pipeline_error *err;
	bool failed;
	int rc; /* of the first error */
	size_t visited;
	int depth;
	pipeline_t *p;
	struct stage_marks *marks; /* parallel to p->stages */
	size_t n_marks;
};

static int fail_at(struct yctx *c, int line, int col, int rc, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int fail_at(struct yctx *c, int line, int col, int rc, const char *fmt, ...)
{
	if (c->failed) /* the first error is the one worth reading */
		return rc;
	c->failed = true;
	c->rc = rc;
	struct pipeline_error *e = c->err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	e->line = line;
	e->column = col;
	snprintf(e->text, sizeof e->text, "%s:%d:%d: %s", c->file, line, col, e->message);
	return rc;
}

#define fail(c, mark, rc, ...) fail_at(c, (int)(mark)->line + 1, (int)(mark)->column + 1, rc, __VA_ARGS__)
#define INVALID AT_EUNPROCESSABLE

/*
 * Quotes text for a message: at most ~40 bytes (never cutting a UTF-8
 * sequence), control bytes escaped, "..." when cut.
 */
static const char *quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t o = 0, i = 0;
	buf[o++] = '"';
	for (; i < len && o + 8 < size && i < 40; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == '"' || ch == '\\' || ch == 0x7f)
			o += (size_t)snprintf(buf + o, size - o, ch == '"' || ch == '\\' ? "\\%c" : "\\x%02x", ch);
		else
			buf[o++] = (char)ch;
	}
	if (i < len) {
		while (o > 1 && ((unsigned char)buf[o - 1] & 0xc0) == 0x80)
			o--; /* drop a partial sequence's continuation bytes ... */
		if (o > 1 && ((unsigned char)buf[o - 1] & 0xc0) == 0xc0)
			o--; /* ... and its lead byte */
		o += (size_t)snprintf(buf + o, size - o, "...");
	}
	snprintf(buf + o, size - o, "\"");
	return buf;
}

/* ---- did you mean ---- */

/* Optimal-string-alignment distance: a transposition ("retires") costs 1. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

/* The closest candidate if it is close enough to be a typo, else NULL. */
static const char *suggest(const char *word, const char *const *cands, size_t n)
{
	size_t len = strlen(word), best_d = 99;
	size_t limit = len <= 3 ? 1 : len <= 8 ? 2 : 3;
	const char *best = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(word, cands[i]);
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	return best && best_d <= limit && best_d < len ? best : NULL;
}

/* " (did you mean "x"?)" or "" */
static const char *did_you_mean(char *buf, size_t size, const char *word, const char *const *cands, size_t n)
{
	const char *s = suggest(word, cands, n);
	if (!s)
		return "";
	snprintf(buf, size, " (did you mean \"%s\"?)", s);
	return buf;
}

/* ---- scalars ---- */

static const char *text_of(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }
static size_t len_of(const yaml_node_t *n) { return n->data.scalar.length; }
static bool is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

static bool text_is(const char *s, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || !is_plain(n))
		return false;
	const char *s = text_of(n);
	size_t l = len_of(n);
	return l == 0 || text_is(s, l, "~") || text_is(s, l, "null") || text_is(s, l, "Null") || text_is(s, l, "NULL");
}

static int parse_bool(const char *s, size_t l, bool *out)
{
	if (text_is(s, l, "true") || text_is(s, l, "True") || text_is(s, l, "TRUE"))
		*out = true;
	else if (text_is(s, l, "false") || text_is(s, l, "False") || text_is(s, l, "FALSE"))
		*out = false;
	else
		return -1;
	return 0;
}

/* 0 ok, -1 not an integer, 1 an integer that overflows int64 */
static int parse_int(const char *s, size_t l, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	if (i < l && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	if (i == l)
		return -1;
	uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	bool over = false;
	for (; i < l; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned dg = (unsigned)(s[i] - '0');
		if (v > (lim - dg) / 10)
			over = true;
		else
			v = v * 10 + dg;
	}
	if (over)
		return 1;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* A finite decimal number (YAML 1.2 core float or int); no hex, inf or nan. */
static int parse_float(const char *s, size_t l, double *out)
{
	char tmp[64];
	bool digit = false;
	if (l == 0 || l >= sizeof tmp)
		return -1;
	for (size_t i = 0; i < l; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			digit = true;
		else if (!strchr("+-.eE", s[i]) || s[i] == 0)
			return -1;
	}
	if (!digit)
		return -1;
	memcpy(tmp, s, l);
	tmp[l] = 0;
	char *end;
	errno = 0;
	double v = strtod(tmp, &end);
	if (*end || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* Matched in this order, so "ms" is tried before "m". */
static const struct {
	const char *unit;
	int64_t ms;
} dur_units[] = {{"d", 86400000}, {"h", 3600000}, {"ms", 1}, {"m", 60000}, {"s", 1000}};
/* rank = position in the written order d, h, m, s, ms; ranks must increase */
static int dur_rank(int64_t ms)
{
	return ms == 86400000 ? 0 : ms == 3600000 ? 1 : ms == 60000 ? 2 : ms == 1000 ? 3 : 4;
}

/* "1h30m" -> 5400000. Units d, h, m, s, ms, each at most once, largest first. */
static int parse_duration(const char *s, size_t l, int64_t *out)
{
	size_t i = 0;
	int64_t total = 0;
	int last_rank = -1;
	if (l == 0)
		return -1;
	while (i < l) {
		int64_t n = 0;
		size_t start = i;
		while (i < l && s[i] >= '0' && s[i] <= '9') {
			if (n > (INT64_MAX - 9) / 10)
				return -1;
			n = n * 10 + (s[i++] - '0');
		}
		if (i == start)
			return -1;
		size_t u;
		for (u = 0; u < sizeof dur_units / sizeof dur_units[0]; u++) {
			size_t ul = strlen(dur_units[u].unit);
			if (l - i >= ul && memcmp(s + i, dur_units[u].unit, ul) == 0)
				break;
		}
		if (u == sizeof dur_units / sizeof dur_units[0])
			return -1;
		int rank = dur_rank(dur_units[u].ms);
		if (rank <= last_rank)
			return -1;
		last_rank = rank;
		i += strlen(dur_units[u].unit);
		if (n > (INT64_MAX - total) / dur_units[u].ms)
			return -1;
		total += n * dur_units[u].ms;
	}
	*out = total;
	return 0;
}

static void format_duration(char *buf, size_t size, int64_t ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} order[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
	size_t o = 0;
	buf[0] = 0;
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return;
	}
	for (size_t u = 0; u < 5 && o < size; u++)
		if (ms >= order[u].ms) {
			o += (size_t)snprintf(buf + o, size - o, "%lld%s", (long long)(ms / order[u].ms),
					      order[u].unit);
			ms %= order[u].ms;
		}
}

static bool valid_name(const char *s, size_t l)
{
	if (l < 1 || l > 63)
		return false;
	for (size_t i = 0; i < l; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static const char *node_kind(const yaml_node_t *n)
{
	return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static const char *type_desc(const struct field *f)
{
	switch (f->type) {
	case T_STR: return "a string";
	case T_NAME: return "a name";
	case T_INT: return "an integer";
	case T_FLOAT: return "a number";
	case T_BOOL: return "true or false";
	case T_DURATION: return "a duration";
	case T_ENUM: return "one of its choices";
	case T_MAP: return "a mapping";
	case T_CUSTOM: return f->type_doc;
	}
	return "?";
}

/* ---- the node graph, bounded ---- */

/*
 * Every node the walk looks at goes through here: an alias is a second
 * reference to the same node, so this count is the size of the expanded
 * document, and capping it defuses alias bombs and anchor cycles.
 */
static yaml_node_t *node_at(struct yctx *c, int id, const yaml_mark_t *from)
{
	yaml_node_t *n = yaml_document_get_node(c->doc, id);
	if (!n) {
		fail(c, from, AT_EINTERNAL, "internal error: dangling YAML node");
		return NULL;
	}
	if (++c->visited > PIPELINE_YAML_MAX_NODES) {
		fail(c, &n->start_mark, AT_ETOOBIG,
		     "document too large: more than %d YAML nodes (aliases count again each time they are used)",
		     PIPELINE_YAML_MAX_NODES);
		return NULL;
	}
	/* explicit tags other than the standard ones would silently change meaning */
	if (n->tag && strncmp((const char *)n->tag, "tag:yaml.org,2002:", 18) != 0) {
		char q[128];
		fail(c, &n->start_mark, INVALID, "unsupported YAML tag %s",
		     quote(q, sizeof q, (const char *)n->tag, strlen((const char *)n->tag)));
		return NULL;
	}
	if (n->type == YAML_SCALAR_NODE && memchr(n->data.scalar.value, 0, n->data.scalar.length)) {
		fail(c, &n->start_mark, INVALID, "string contains a NUL character");
		return NULL;
	}
	return n;
}

/* ---- forward declarations: walkers and the tables that name them ---- */

static int walk_map(struct yctx *c, yaml_node_t *node, const yaml_mark_t *mark, const struct schema *s,
		    const char *path, void *base, json_t *obj);
static int walk_stages(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base);
static int walk_kind(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark, const char *path,
		     void *base);
static int walk_needs(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		      const char *path, void *base);
static int walk_params(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base);
static int walk_gate(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark, const char *path,
		     void *base);
static int check_gate_rule(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj);
static int check_canny(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj);
static int check_collect(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj);
static int check_resources(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj);
static int validate_multiple_of_4(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
				  const struct value *v);
static int walk_notify(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base);
static int walk_notify_events(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
			      const char *path, void *base);
static int validate_webhook_url(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
				const struct value *v);
static int validate_env_name(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
			     const struct value *v);

/* ---- the schema ---- */

static const char *const kind_names[] = {
#define KIND_NAME(e, fn, name, job, test, cache, doc) name,
	STAGE_KIND_MAP(KIND_NAME)
#undef KIND_NAME
		NULL};
static const char *const gate_op_names[] = {
#define GATE_OP_NAME(e, name, doc) name,
	PIPELINE_GATE_OP_MAP(GATE_OP_NAME)
#undef GATE_OP_NAME
		NULL};
static const char *const warm_starts[] = {"production", "scratch", NULL};
static const char *const metric_names[] = {
#define METRIC_NAME(name, higher, doc) name,
	METRIC_MAP(METRIC_NAME)
#undef METRIC_NAME
		NULL};
static const char *const slice_names[] = {
#define SLICE_NAME(e, name, doc) name,
	SLICE_MAP(SLICE_NAME)
#undef SLICE_NAME
		NULL};

/* The alert kinds of sql/011_webhooks.sql a pipeline may ask for (the ones
 * that name a run; node.unhealthy goes to --webhook-url only). */
static const char *const notify_event_names[] =
	{"run.failed", "gate.failed", "model.promoted", "model.rolled_back", "model.auto_rolled_back", NULL};
#define NOTIFY_MAX_TARGETS 8

static const struct field notify_fields[] = {
	{"url", T_STR, .required = true, .validate = validate_webhook_url,
	 .doc = "http:// or https:// URL atelierd POSTs the signed event to (docs/alerts.md)"},
	{"events", T_CUSTOM, .def = "all of them", .walk = walk_notify_events, .choices = notify_event_names,
	 .type_doc = "list of event kinds", .doc = "the kinds to send for this pipeline's runs and their versions"},
	{"secret_env", T_STR, .required = true, .validate = validate_env_name,
	 .doc = "name of atelierd's environment variable holding the HMAC-SHA256 key (never the key itself)"},
};
static const struct schema notify_schema = SCHEMA("notify target", notify_fields);

static const struct field trigger_fields[] = {
	{"new_sketches", T_INT, AT_LEAST(1), AT(struct pipeline_triggers, new_sketches),
	 .doc = "run when this many accepted training sketches are newer than every dataset this pipeline froze; "
		"absent: off"},
	{"every", T_DURATION, RANGE(1 * MS_S, 365 * MS_D), AT(struct pipeline_triggers, every_ms),
	 .doc = "run at this interval; absent: off"},
	{"deletions", T_INT, AT_LEAST(1), AT(struct pipeline_triggers, deletions),
	 .doc = "run when this many sketches in the training data of the model's production version were withdrawn "
		"since the pipeline's last run; absent: off"},
	{"manual", T_BOOL, .def = "true", AT(struct pipeline_triggers, manual),
	 .doc = "allow runs started by hand (`atelier run`, POST /v1/pipelines/NAME/runs)"},
};
static const struct schema trigger_schema = SCHEMA("triggers", trigger_fields);

static const struct field resource_fields[] = {
	{"gpu", T_INT, .def = "0", RANGE(0, 16), AT(struct pipeline_stage, gpu),
	 .doc = "GPUs the job needs; 0 runs anywhere (a worker with a GPU still uses it)"},
	{"cpu", T_INT, .def = "1", RANGE(0, 1024), AT(struct pipeline_stage, cpu),
	 .doc = "CPU cores the job wants; 0 = no reservation"},
	{"workers", T_INT, .def = "1", RANGE(1, 64), AT(struct pipeline_stage, workers),
	 .doc = "train stages: ranks of a data-parallel gang, each on its own worker with `gpu` GPUs "
		"(docs/training.md); 1 = one process"},
};
static const struct schema resource_schema = SCHEMA("resources", resource_fields, .check = check_resources);

static const struct field gate_rule_fields[] = {
	{"metric", T_ENUM, .required = true, .choices = metric_names,
	 .doc = "a metric the evaluate stage reports (directions: docs/training.md)"},
	{"slice", T_ENUM, .choices = slice_names,
	 .doc = "judge the metric on this slice of the holdout set only (docs/training.md); absent: overall"},
	{"min", T_FLOAT, .doc = "pass when candidate >= min"},
	{"max", T_FLOAT, .doc = "pass when candidate <= max"},
	{"max_regression", T_FLOAT, AT_LEAST(0),
	 .doc = "pass when candidate is worse than the champion by at most this (absolute; direction from the metric)"},
	{"min_improvement", T_FLOAT, AT_LEAST(0),
	 .doc = "pass when candidate beats the champion by at least this (absolute)"},
};
static const struct schema gate_rule_schema =
	SCHEMA("gate rule (exactly one of min, max, max_regression, min_improvement)", gate_rule_fields,
	       .check = check_gate_rule);

/* -- params, one table per stage kind -- */

static const struct field collect_fields[] = {
	{"min_sketches", T_INT, .def = "50", RANGE(0, 1e9), .doc = "fail the run when fewer training sketches exist"},
	{"min_paintings", T_INT, .def = "50", RANGE(0, 1e9), .doc = "fail the run when fewer paintings exist"},
	{"max_items", T_INT, .def = "100000", RANGE(1, 1e9),
	 .doc = "freeze at most this many of each (newest first); >= min_sketches and min_paintings"},
	{"replay", T_FLOAT, .def = "0", RANGE(0, 1),
	 .doc = "once this pipeline has a dataset: freeze only images no earlier dataset of it held, plus this share "
		"of the total replayed from those it held (smallest sha256 first); 0 = the newest max_items"},
};
static const struct field augment_fields[] = {
	{"flip", T_BOOL, .def = "true", .doc = "random horizontal flips"},
	{"jitter", T_FLOAT, .def = "0", RANGE(0, 1), .doc = "random crop/scale jitter, as a fraction of the size"},
};
static const struct schema augment_schema = SCHEMA("augment", augment_fields);
static const struct field p2s_fields[] = {
	{"blur_sigma", T_FLOAT, .def = "1.5", RANGE(0, 10), .doc = "Gaussian blur before edge detection"},
	{"canny_low", T_FLOAT, .def = "0.1", RANGE(0, 1), .doc = "Canny low threshold (fraction of max gradient)"},
	{"canny_high", T_FLOAT, .def = "0.3", RANGE(0, 1), .doc = "Canny high threshold; > canny_low"},
	{"dilate", T_INT, .def = "1", RANGE(0, 10), .doc = "dilation radius of the edges, pixels"},
	{"min_ink", T_FLOAT, .def = "0.01", RANGE(0, 1), .doc = "drop extracted sketches with less ink than this"},
};
static const struct schema p2s_schema = SCHEMA("photo_to_sketch", p2s_fields, .check = check_canny);
static const struct field prepare_fields[] = {
	{"size", T_INT, .def = "64", RANGE(16, 1024), .validate = validate_multiple_of_4,
	 .doc = "training image side, pixels; a multiple of 4"},
	{"augment", T_MAP, .sub = &augment_schema, .doc = "data augmentation"},
	{"photo_to_sketch", T_MAP, .sub = &p2s_schema, .doc = "sketch extraction for photo sources"},
};
/* Open: the model engineer's keys pass through; the known ones are typed. */
static const struct field model_fields[] = {
	{"gen_dim", T_INT, RANGE(1, 1024), .doc = "generator base channels"},
	{"dis_dim", T_INT, RANGE(1, 1024), .doc = "discriminator base channels"},
	{"style_dim", T_INT, RANGE(1, 256), .doc = "style code length"},
	{"n_res", T_INT, RANGE(0, 32), .doc = "residual blocks in content encoder and decoder"},
	{"n_downsample", T_INT, RANGE(0, 6), .doc = "downsampling convolutions in the content encoder"},
	{"mlp_dim", T_INT, RANGE(1, 4096), .doc = "width of the AdaIN parameter MLP"},
	{"num_scales", T_INT, RANGE(1, 5), .doc = "discriminator scales"},
	{"pono", T_BOOL, .doc = "positional normalization with moment shortcut"},
};
static const struct schema model_schema =
	SCHEMA("model (other keys pass through to the model unchecked)", model_fields, .open = true);
/* The GPU preset: keys that replace the stage's when the job trains on CUDA. */
static const struct field gpu_preset_fields[] = {
	{"steps", T_INT, RANGE(1, 1e8), .doc = "optimizer steps on a GPU"},
	{"batch", T_INT, RANGE(1, 1024), .doc = "batch size on a GPU"},
	{"lr", T_FLOAT, RANGE(1e-9, 1), .doc = "learning rate on a GPU"},
	{"checkpoint_every", T_INT, RANGE(1, 1e8), .doc = "steps between checkpoints on a GPU"},
	{"model", T_MAP, .sub = &model_schema, .doc = "architecture on a GPU, key by key over params.model"},
};
static const struct schema gpu_preset_schema = SCHEMA("gpu", gpu_preset_fields);
static const struct field train_fields[] = {
	{"steps", T_INT, .def = "2000", RANGE(1, 1e8), .doc = "optimizer steps"},
	{"batch", T_INT, .def = "1", RANGE(1, 1024), .doc = "batch size"},
	{"checkpoint_every", T_INT, .def = "100", RANGE(1, 1e8),
	 .doc = "steps between checkpoints (a dead worker loses at most this many)"},
	{"metrics_every", T_INT, .def = "10", RANGE(1, 1e8), .doc = "steps between loss reports"},
	{"warm_start", T_ENUM, .def = "production", .choices = warm_starts,
	 .doc = "start from the production model, or from scratch"},
	{"lr", T_FLOAT, .def = "0.0001", RANGE(1e-9, 1), .doc = "learning rate (Adam)"},
	{"seed", T_INT, .def = "1", RANGE(0, 2147483647), .doc = "random seed"},
	{"model", T_MAP, .sub = &model_schema, .doc = "architecture; must match the warm-start model's"},
	{"gpu", T_MAP, .sub = &gpu_preset_schema,
	 .doc = "the larger preset a worker training on CUDA uses instead (keys over these params)"},
};
static const struct field evaluate_fields[] = {
	{"samples", T_INT, .def = "8", RANGE(1, 100000), .doc = "holdout sketches scored (0 < n)"},
	{"styles", T_INT, .def = "4", RANGE(1, 64), .doc = "style codes per sketch"},
};
static const struct field promote_fields[] = {
	{"canary_bake", T_DURATION, .def = "5m", RANGE(0, 7 * MS_D),
	 .doc = "time on the canary channel before production"},
	{"max_error_rate", T_FLOAT, .def = "0.01", RANGE(0, 1), .doc = "roll back when canary errors exceed this"},
	{"max_p95_ms", T_INT, .def = "2000", RANGE(1, 600000), .doc = "roll back when canary p95 latency exceeds this"},
	{"min_canary_nodes", T_INT, RANGE(0, 10000),
	 .doc = "canary nodes that must report the candidate before production (unset: 1 when a node follows the "
		"model's canary channel, else 0); fewer holds the candidate on canary"},
};
static const struct field sleep_fields[] = {
	{"duration", T_DURATION, .def = "1s", RANGE(0, MS_D), .doc = "how long the job sleeps"},
};
static const struct field fail_fields[] = {
	{"message", T_STR, .def = "injected failure", .doc = "the error the job fails with"},
};
static const struct field crash_fields[] = {
	{"after", T_DURATION, .def = "0s", RANGE(0, MS_D), .doc = "the worker dies this long into the job"},
};
static const struct schema kind_params[PIPELINE_KIND_COUNT_] = {
	[PIPELINE_KIND_COLLECT] = SCHEMA("collect", collect_fields, .check = check_collect),
	[PIPELINE_KIND_PREPARE] = SCHEMA("prepare", prepare_fields),
	[PIPELINE_KIND_TRAIN] = SCHEMA("train", train_fields),
	[PIPELINE_KIND_EVALUATE] = SCHEMA("evaluate", evaluate_fields),
	[PIPELINE_KIND_PROMOTE] = SCHEMA("promote", promote_fields),
	[PIPELINE_KIND_SLEEP] = SCHEMA("sleep", sleep_fields),
	[PIPELINE_KIND_FAIL] = SCHEMA("fail", fail_fields),
	[PIPELINE_KIND_CRASH] = SCHEMA("crash", crash_fields),
	[PIPELINE_KIND_NOOP] = {.title = "noop", .fields = NULL, .n = 0},
};

static const struct field stage_fields[] = {
	{"kind", T_CUSTOM, .def = "the stage's name", .walk = walk_kind, .choices = kind_names,
	 .type_doc = "stage kind", .doc = "what runs the stage; its params are checked against the kind"},
	{"needs", T_CUSTOM, .def = "[]", .walk = walk_needs, .type_doc = "list of stage names",
	 .doc = "stages that must succeed first; no cycles"},
	{"params", T_CUSTOM, .def = "{}", .walk = walk_params, .type_doc = "mapping",
	 .doc = "kind-specific settings (tables below), passed to the worker as JSON with defaults filled in"},
	{"resources", T_MAP, .sub = &resource_schema, .doc = "what a worker must offer to claim the job"},
	{"timeout", T_DURATION, .def = "1h", RANGE(1 * MS_S, 7 * MS_D), AT(struct pipeline_stage, timeout_ms),
	 .doc = "one attempt is killed after this long"},
	{"retries", T_INT, .def = "1", RANGE(0, 100), AT(struct pipeline_stage, retries),
	 .doc = "attempts after the first fails, with exponential backoff"},
	{"gate", T_CUSTOM, .def = "[]", .walk = walk_gate, .type_doc = "list of gate rules",
	 .doc = "evaluate stages only: rules the candidate must pass to be promoted"},
	{"cache", T_BOOL, .def = "true", AT(struct pipeline_stage, cache),
	 .doc = "reuse the result of a succeeded job with the same kind, params, gate, inputs and worker code instead "
		"of running (prepare, train, evaluate; never collect or promote)"},
};
static const struct schema stage_schema = SCHEMA("stage", stage_fields);

static const struct field top_fields[] = {
	{"pipeline", T_NAME, .required = true, AT(pipeline_t, name), .doc = "the pipeline's name, its identity"},
	{"description", T_STR, .def = "", AT(pipeline_t, description), .doc = "free text for people"},
	{"model", T_NAME, .required = true, AT(pipeline_t, model), .doc = "the model name the registry uses"},
	{"concurrency", T_INT, .def = "1", RANGE(1, 64), AT(pipeline_t, concurrency),
	 .doc = "max active runs; further triggers coalesce into one queued run"},
	{"triggers", T_MAP, .sub = &trigger_schema, AT(pipeline_t, triggers), .doc = "when runs start"},
	{"stages", T_CUSTOM, .required = true, .walk = walk_stages, .type_doc = "mapping of name to stage",
	 .doc = "the stages, keyed by name " NAME_RULE "; at least one"},
	{"notify", T_CUSTOM, .def = "[]", .walk = walk_notify, .type_doc = "list of notify targets",
	 .doc = "alert webhooks for this pipeline's runs (at most 8), besides atelierd's --webhook-url"},
};
static const struct schema top_schema = SCHEMA("pipeline", top_fields);

/* ---- the generic walker ---- */

static int node_get(struct yctx *c, int id, const yaml_mark_t *from, yaml_node_t **out)
{
	*out = node_at(c, id, from);
	if (*out)
		return 0;
	return c->rc;
}

static const char *join(char *buf, size_t size, const char *path, const char *name)
{
	snprintf(buf, size, "%s%s%s", path, *path ? "." : "", name);
	return buf;
}

static void fmt_bound(char *buf, size_t size, const struct field *f, double x)
{
	if (f->type == T_DURATION)
		format_duration(buf, size, (int64_t)x);
	else if (f->type == T_INT)
		snprintf(buf, size, "%lld", (long long)x);
	else
		snprintf(buf, size, "%g", x);
}

static int check_range(struct yctx *c, const struct field *f, const yaml_mark_t *m, const char *path, double x,
		       const char *s, size_t l)
{
	char lo[32], hi[32];
	if ((!f->has_min || x >= f->min) && (!f->has_max || x <= f->max))
		return 0;
	fmt_bound(lo, sizeof lo, f, f->min);
	fmt_bound(hi, sizeof hi, f, f->max);
	int n = l > 40 ? 40 : (int)l;
	if (f->has_min && f->has_max)
		return fail(c, m, INVALID, "\"%s\" must be between %s and %s, got %.*s", path, lo, hi, n, s);
	if (f->has_min)
		return fail(c, m, INVALID, "\"%s\" must be at least %s, got %.*s", path, lo, n, s);
	return fail(c, m, INVALID, "\"%s\" must be at most %s, got %.*s", path, hi, n, s);
}

/* A quoted "2" or "true" is a string in YAML; say so, it is an easy slip. */
static const char *quoted_hint(bool plain, const char *s, size_t l)
{
	int64_t i;
	double d;
	bool b;
	if (!plain && (parse_int(s, l, &i) == 0 || parse_float(s, l, &d) == 0 || parse_bool(s, l, &b) == 0))
		return " (quoted, so a string: drop the quotes)";
	return "";
}

/*
 * Converts one scalar (user text, or a table default) to the field's type and
 * range-checks it. Quoted scalars are strings: `retries: "3"` is a type error,
 * as YAML means it to be. s is NUL-terminated (libyaml and the table both
 * guarantee it) and holds no NUL (node_at rejects those).
 */
static int convert(struct yctx *c, const struct field *f, const char *s, size_t l, bool plain, const yaml_mark_t *m,
		   const char *path, struct value *v)
{
	char q[128], dm[96];
	memset(v, 0, sizeof *v);
	v->s = s;
	v->slen = l;
	switch (f->type) {
	case T_STR: return 0;
	case T_NAME:
		if (!valid_name(s, l))
			return fail(c, m, INVALID, "\"%s\" must be a name matching " NAME_RULE ", got %s", path,
				    quote(q, sizeof q, s, l));
		return 0;
	case T_ENUM: {
		size_t n = 0;
		char list[128] = "";
		for (; f->choices[n]; n++) {
			if (text_is(s, l, f->choices[n]))
				return 0;
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", n ? ", " : "", f->choices[n]);
		}
		return fail(c, m, INVALID, "\"%s\" must be one of %s, got %s%s", path, list, quote(q, sizeof q, s, l),
			    did_you_mean(dm, sizeof dm, s, f->choices, n));
	}
	case T_INT: {
		int r = plain ? parse_int(s, l, &v->i) : -1;
		if (r < 0)
			return fail(c, m, INVALID, "\"%s\" must be an integer, got %s%s", path,
				    quote(q, sizeof q, s, l), quoted_hint(plain, s, l));
		if (r > 0)
			return fail(c, m, INVALID, "\"%s\" is out of range, got %.40s", path, s);
		return check_range(c, f, m, path, (double)v->i, s, l);
	}
	case T_FLOAT:
		if (!plain || parse_float(s, l, &v->d) < 0)
			return fail(c, m, INVALID, "\"%s\" must be a number, got %s%s", path, quote(q, sizeof q, s, l),
				    quoted_hint(plain, s, l));
		return check_range(c, f, m, path, v->d, s, l);
	case T_BOOL:
		if (!plain || parse_bool(s, l, &v->b) < 0)
			return fail(c, m, INVALID, "\"%s\" must be true or false, got %s%s", path,
				    quote(q, sizeof q, s, l), quoted_hint(plain, s, l));
		return 0;
	case T_DURATION:
		if (parse_duration(s, l, &v->i) < 0) {
			int64_t n;
			if (plain && parse_int(s, l, &n) == 0)
				return fail(
					c, m, INVALID,
					"invalid duration %s for \"%s\": missing unit (ms, s, m, h, d), e.g. \"%llds\"",
					quote(q, sizeof q, s, l), path, (long long)n);
			return fail(c, m, INVALID,
				    "invalid duration %s for \"%s\": use numbers with units ms, s, m, h, d, "
				    "largest first, e.g. 30s or 1h30m",
				    quote(q, sizeof q, s, l), path);
		}
		return check_range(c, f, m, path, (double)v->i, s, l);
	case T_MAP:
	case T_CUSTOM: break;
	}
	return fail(c, m, AT_EINTERNAL, "internal error: \"%s\" has no scalar type", path);
}

/* Puts a converted value where the field says: the C struct, the JSON object, or both. */
static int store(struct yctx *c, const struct field *f, const struct value *v, const yaml_mark_t *m, void *base,
		 json_t *obj)
{
	if (base && f->has_off) {
		void *dst = (char *)base + f->off;
		switch (f->type) {
		case T_STR:
		case T_NAME:
		case T_ENUM: {
			char *d = strndup(v->s, v->slen);
			if (!d)
				return fail(c, m, AT_ENOMEM, "out of memory");
			free(*(char **)dst);
			*(char **)dst = d;
			break;
		}
		case T_INT:
		case T_DURATION: *(int64_t *)dst = v->i; break;
		case T_FLOAT: *(double *)dst = v->d; break;
		case T_BOOL: *(bool *)dst = v->b; break;
		case T_MAP:
		case T_CUSTOM: break;
		}
	}
	if (obj) {
		json_t *j = NULL;
		switch (f->type) {
		case T_STR:
		case T_NAME:
		case T_ENUM: j = json_stringn(v->s, v->slen); break;
		case T_INT:
		case T_DURATION: j = json_integer(v->i); break;
		case T_FLOAT: j = json_real(v->d); break;
		case T_BOOL: j = json_boolean(v->b); break;
		case T_MAP:
		case T_CUSTOM: break;
		}
		if (!j || json_object_set_new(obj, f->name, j) < 0)
			return fail(c, m, AT_ENOMEM, "out of memory");
	}
	return 0;
}

/* Any YAML value to JSON, for keys the schema passes through untyped. */
static json_t *to_any(struct yctx *c, yaml_node_t *n, const char *path, int depth)
{
	char sub[256], q[128];
	json_t *j = NULL;
	if (depth > PIPELINE_YAML_MAX_DEPTH) {
		fail(c, &n->start_mark, AT_ETOOBIG,
		     "value nested more than %d levels deep (an anchor that contains itself?)",
		     PIPELINE_YAML_MAX_DEPTH);
		return NULL;
	}
	if (n->type == YAML_SCALAR_NODE) {
		const char *s = text_of(n);
		size_t l = len_of(n);
		int64_t i;
		double d;
		bool b;
		if (!is_plain(n))
			j = json_stringn(s, l);
		else if (is_null(n))
			j = json_null();
		else if (parse_bool(s, l, &b) == 0)
			j = json_boolean(b);
		else if (parse_int(s, l, &i) == 0)
			j = json_integer(i);
		else if (parse_float(s, l, &d) == 0)
			j = json_real(d);
		else
			j = json_stringn(s, l);
		if (!j)
			fail(c, &n->start_mark, AT_ENOMEM, "out of memory");
		return j;
	}
	if (n->type == YAML_SEQUENCE_NODE) {
		if (!(j = json_array()))
			goto nomem;
		size_t idx = 0;
		for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
		     it++, idx++) {
			yaml_node_t *item;
			if (node_get(c, *it, &n->start_mark, &item) < 0)
				goto err;
			snprintf(sub, sizeof sub, "%s[%zu]", path, idx);
			json_t *child = to_any(c, item, sub, depth + 1);
			if (!child)
				goto err;
			if (json_array_append_new(j, child) < 0)
				goto nomem;
		}
		return j;
	}
	if (!(j = json_object()))
		goto nomem;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k, *v;
		if (node_get(c, pr->key, &n->start_mark, &k) < 0)
			goto err;
		if (k->type != YAML_SCALAR_NODE) {
			fail(c, &k->start_mark, INVALID, "mapping keys must be strings, got %s", node_kind(k));
			goto err;
		}
		if (json_object_get(j, text_of(k))) {
			fail(c, &k->start_mark, INVALID, "duplicate key %s", quote(q, sizeof q, text_of(k), len_of(k)));
			goto err;
		}
		if (node_get(c, pr->value, &k->start_mark, &v) < 0)
			goto err;
		json_t *child = to_any(c, v, join(sub, sizeof sub, path, text_of(k)), depth + 1);
		if (!child)
			goto err;
		if (json_object_set_new(j, text_of(k), child) < 0)
			goto nomem;
	}
	return j;
nomem:
	fail(c, &n->start_mark, AT_ENOMEM, "out of memory");
err:
	json_decref(j);
	return NULL;
}

static int walk_field(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		      const char *path, void *base, json_t *obj)
{
	struct value v;
	int rc;
	/* `key:` and `key: ~` mean "not set": defaults apply, required keys fail */
	if (val && is_null(val))
		val = NULL;
	if (!val && f->required)
		return fail(c, mark, INVALID, "missing required key \"%s\"", f->name);
	if (f->type == T_CUSTOM)
		return f->walk(c, f, val, val ? &val->start_mark : mark, path, base);
	if (f->type == T_MAP) {
		json_t *child = NULL;
		if (obj) {
			child = json_object();
			if (!child || json_object_set_new(obj, f->name, child) < 0)
				return fail(c, mark, AT_ENOMEM, "out of memory");
		}
		void *sub = base ? (f->has_off ? (char *)base + f->off : base) : NULL;
		return walk_map(c, val, mark, f->sub, path, sub, child);
	}
	if (!val) {
		if (!f->def)
			return 0;
		rc = convert(c, f, f->def, strlen(f->def), true, mark, path, &v);
	} else if (val->type != YAML_SCALAR_NODE) {
		return fail(c, &val->start_mark, INVALID, "\"%s\" must be %s, got %s", path, type_desc(f),
			    node_kind(val));
	} else {
		rc = convert(c, f, text_of(val), len_of(val), is_plain(val), &val->start_mark, path, &v);
	}
	if (rc < 0)
		return rc;
	if (f->validate && (rc = f->validate(c, f, val ? &val->start_mark : mark, path, &v)) < 0)
		return rc;
	return store(c, f, &v, val ? &val->start_mark : mark, base, obj);
}

/*
 * Walks a mapping against a schema. node NULL means the mapping is absent:
 * every field then takes its default (and required ones fail at mark).
 */
static int walk_map(struct yctx *c, yaml_node_t *node, const yaml_mark_t *mark, const struct schema *s,
		    const char *path, void *base, json_t *obj)
{
	char fpath[256], q[128], dm[96];
	bool seen[MAX_FIELDS] = {false};
	yaml_mark_t first[MAX_FIELDS];
	const char *names[MAX_FIELDS];
	int rc = 0;

	if (s->n > MAX_FIELDS)
		return fail(c, mark, AT_EINTERNAL, "internal error: schema %s too large", s->title);
	for (size_t i = 0; i < s->n; i++)
		names[i] = s->fields[i].name;
	if (node && is_null(node))
		node = NULL;
	if (node && node->type != YAML_MAPPING_NODE)
		return fail(c, &node->start_mark, INVALID, "\"%s\" must be a mapping, got %s", path, node_kind(node));
	const yaml_mark_t *here = node ? &node->start_mark : mark;
	if (++c->depth > PIPELINE_YAML_MAX_DEPTH) {
		rc = fail(c, here, AT_ETOOBIG, "\"%s\" is nested too deeply", path);
		goto out;
	}

	for (yaml_node_pair_t *pr = node ? node->data.mapping.pairs.start : NULL;
	     node && pr < node->data.mapping.pairs.top; pr++) {
		yaml_node_t *k, *v;
		if ((rc = node_get(c, pr->key, here, &k)) < 0)
			goto out;
		if (k->type != YAML_SCALAR_NODE) {
			rc = fail(c, &k->start_mark, INVALID, "mapping keys must be strings, got %s", node_kind(k));
			goto out;
		}
		const char *key = text_of(k);
		join(fpath, sizeof fpath, path, key);
		size_t idx = 0;
		while (idx < s->n && strcmp(s->fields[idx].name, key) != 0)
			idx++;
		if (idx == s->n) {
			/* even where unknown keys pass through, a near miss is a typo */
			const char *sug = suggest(key, names, s->n);
			if (!s->open || sug || !obj) {
				rc = fail(c, &k->start_mark, INVALID, "unknown key %s%s",
					  quote(q, sizeof q, key, len_of(k)),
					  did_you_mean(dm, sizeof dm, key, names, s->n));
				goto out;
			}
			if (json_object_get(obj, key)) {
				rc = fail(c, &k->start_mark, INVALID, "duplicate key %s",
					  quote(q, sizeof q, key, len_of(k)));
				goto out;
			}
			if ((rc = node_get(c, pr->value, &k->start_mark, &v)) < 0)
				goto out;
			json_t *j = to_any(c, v, fpath, c->depth + 1);
			if (!j) {
				rc = c->rc;
				goto out;
			}
			if (json_object_set_new(obj, key, j) < 0) {
				rc = fail(c, &k->start_mark, AT_ENOMEM, "out of memory");
				goto out;
			}
			continue;
		}
		if (seen[idx]) {
			rc = fail(c, &k->start_mark, INVALID, "duplicate key \"%s\" (first at %d:%d)", key,
				  (int)first[idx].line + 1, (int)first[idx].column + 1);
			goto out;
		}
		seen[idx] = true;
		first[idx] = k->start_mark;
		if ((rc = node_get(c, pr->value, &k->start_mark, &v)) < 0)
			goto out;
		if ((rc = walk_field(c, &s->fields[idx], v, &k->start_mark, fpath, base, obj)) < 0)
			goto out;
	}
	for (size_t i = 0; i < s->n; i++)
		if (!seen[i] && (rc = walk_field(c, &s->fields[i], NULL, here,
						 join(fpath, sizeof fpath, path, s->fields[i].name), base, obj)) < 0)
			goto out;
	if (s->check)
		rc = s->check(c, here, path, base, obj);
out:
	c->depth--;
	return rc;
}

/* ---- walkers for keys with structure of their own ---- */

static int kind_of(struct yctx *c, yaml_node_t *val, struct pipeline_stage *st)
{
	char q[128], dm[96];
	if (val->type != YAML_SCALAR_NODE)
		return fail(c, &val->start_mark, INVALID, "\"kind\" must be a stage kind, got %s", node_kind(val));
	int k = pipeline_kind_from_name(text_of(val));
	if (k < 0)
		return fail(c, &val->start_mark, INVALID, "unknown stage kind %s%s",
			    quote(q, sizeof q, text_of(val), len_of(val)),
			    did_you_mean(dm, sizeof dm, text_of(val), kind_names, PIPELINE_KIND_COUNT_));
	st->kind = (enum pipeline_kind)k;
	return 0;
}

static int walk_kind(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark, const char *path,
		     void *base)
{
	return val ? kind_of(c, val, base) : 0; /* absent: walk_stage already used the name */
}

static int walk_needs(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		      const char *path, void *base)
{
	struct pipeline_stage *st = base;
	/* stages are walked as they are added, so the stage being walked is the last one */
	struct stage_marks *sm = &c->marks[c->n_marks - 1];
	char q[128];
	if (!val)
		return 0;
	if (val->type != YAML_SEQUENCE_NODE)
		return fail(c, &val->start_mark, INVALID,
			    "\"%s\" must be a list of stage names, e.g. [collect], got %s", path,
			    val->type == YAML_SCALAR_NODE ? quote(q, sizeof q, text_of(val), len_of(val))
							  : node_kind(val));
	for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *item;
		int rc = node_get(c, *it, &val->start_mark, &item);
		if (rc < 0)
			return rc;
		if (item->type != YAML_SCALAR_NODE || !valid_name(text_of(item), len_of(item)))
			return fail(c, &item->start_mark, INVALID, "\"%s\" entries must be stage names, got %s", path,
				    item->type == YAML_SCALAR_NODE ? quote(q, sizeof q, text_of(item), len_of(item))
								   : node_kind(item));
		yaml_mark_t *v = realloc(sm->needs, (sm->n_needs + 1) * sizeof *v);
		if (!v)
			return fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
		sm->needs = v;
		v[sm->n_needs++] = item->start_mark;
		if (pipeline_stage_add_need(st, text_of(item)) < 0)
			return fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
	}
	return 0;
}

static int walk_params(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base)
{
	struct pipeline_stage *st = base;
	return walk_map(c, val, mark, &kind_params[st->kind], path, NULL, st->params);
}

static int walk_gate(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark, const char *path,
		     void *base)
{
	struct pipeline_stage *st = base;
	char ipath[256];
	if (!val)
		return 0;
	if (st->kind != PIPELINE_KIND_EVALUATE)
		return fail(c, &val->start_mark, INVALID,
			    "\"gate\" is only allowed on evaluate stages (\"%s\" is a %s stage)", st->name,
			    pipeline_kind_name(st->kind));
	if (val->type != YAML_SEQUENCE_NODE)
		return fail(c, &val->start_mark, INVALID, "\"%s\" must be a list of gate rules, got %s", path,
			    node_kind(val));
	size_t i = 0;
	for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++, i++) {
		yaml_node_t *item;
		int rc = node_get(c, *it, &val->start_mark, &item);
		if (rc < 0)
			return rc;
		json_t *rule = json_object();
		if (!rule)
			return fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
		snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
		rc = walk_map(c, item, &item->start_mark, &gate_rule_schema, ipath, NULL, rule);
		for (int op = 0; rc == 0 && op < PIPELINE_GATE_OP_COUNT_; op++) {
			json_t *t = json_object_get(rule, gate_op_names[op]);
			if (t && pipeline_stage_add_gate(st, json_string_value(json_object_get(rule, "metric")),
							 (enum pipeline_gate_op)op, json_number_value(t),
							 json_string_value(json_object_get(rule, "slice"))) < 0)
				rc = fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
		}
		json_decref(rule);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int walk_stage(struct yctx *c, size_t idx, yaml_node_t *node, const yaml_mark_t *keymark, const char *path)
{
	struct pipeline_stage *st = &c->p->stages[idx];
	char dm[96];
	int rc;
	if (node && is_null(node))
		node = NULL;
	if (node && node->type != YAML_MAPPING_NODE)
		return fail(c, &node->start_mark, INVALID, "stage \"%s\" must be a mapping, got %s", st->name,
			    node_kind(node));
	/* the kind first: params are checked against it, and it may come after them */
	yaml_node_t *kind = NULL;
	for (yaml_node_pair_t *pr = node ? node->data.mapping.pairs.start : NULL;
	     node && pr < node->data.mapping.pairs.top && !kind; pr++) {
		yaml_node_t *k;
		if ((rc = node_get(c, pr->key, &node->start_mark, &k)) < 0)
			return rc;
		if (k->type == YAML_SCALAR_NODE && strcmp(text_of(k), "kind") == 0 &&
		    (rc = node_get(c, pr->value, &k->start_mark, &kind)) < 0)
			return rc;
	}
	if (kind && !is_null(kind)) {
		if ((rc = kind_of(c, kind, st)) < 0)
			return rc;
	} else {
		int k = pipeline_kind_from_name(st->name);
		if (k < 0)
			return fail(c, keymark, INVALID,
				    "stage \"%s\" needs a \"kind\": its name is not a stage kind "
				    "(collect, prepare, train, evaluate, promote, sleep, fail, crash, noop)%s",
				    st->name, did_you_mean(dm, sizeof dm, st->name, kind_names, PIPELINE_KIND_COUNT_));
		st->kind = (enum pipeline_kind)k;
	}
	return walk_map(c, node, keymark, &stage_schema, path, st, NULL);
}

static int walk_stages(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base)
{
	pipeline_t *p = base;
	char q[128], spath[256];
	int rc;
	if (!val)
		return 0;
	if (val->type != YAML_MAPPING_NODE)
		return fail(c, &val->start_mark, INVALID,
			    "\"stages\" must be a mapping of stage names to stages, got %s", node_kind(val));
	if (val->data.mapping.pairs.start == val->data.mapping.pairs.top)
		return fail(c, &val->start_mark, INVALID, "\"stages\" must declare at least one stage");
	for (yaml_node_pair_t *pr = val->data.mapping.pairs.start; pr < val->data.mapping.pairs.top; pr++) {
		yaml_node_t *k, *v;
		if ((rc = node_get(c, pr->key, &val->start_mark, &k)) < 0)
			return rc;
		if (k->type != YAML_SCALAR_NODE || !valid_name(text_of(k), len_of(k)))
			return fail(c, &k->start_mark, INVALID, "stage names must match " NAME_RULE ", got %s",
				    k->type == YAML_SCALAR_NODE ? quote(q, sizeof q, text_of(k), len_of(k))
								: node_kind(k));
		long prev = pipeline_stage_index(p, text_of(k));
		if (prev >= 0)
			return fail(c, &k->start_mark, INVALID, "duplicate stage \"%s\" (first defined at %d:%d)",
				    text_of(k), (int)c->marks[prev].key.line + 1, (int)c->marks[prev].key.column + 1);
		struct stage_marks *m = realloc(c->marks, (c->n_marks + 1) * sizeof *m);
		if (!m)
			return fail(c, &k->start_mark, AT_ENOMEM, "out of memory");
		c->marks = m;
		memset(&m[c->n_marks], 0, sizeof *m);
		m[c->n_marks++].key = k->start_mark;
		if (pipeline_add_stage(p, text_of(k), NULL) < 0)
			return fail(c, &k->start_mark, AT_ENOMEM, "out of memory");
		if ((rc = node_get(c, pr->value, &k->start_mark, &v)) < 0)
			return rc;
		snprintf(spath, sizeof spath, "stages.%s", text_of(k));
		if ((rc = walk_stage(c, p->n_stages - 1, v, &k->start_mark, spath)) < 0)
			return rc;
	}
	return 0;
}

/* ---- cross-field checks and validators (named in the tables) ---- */

static int check_gate_rule(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj)
{
	const char *set[PIPELINE_GATE_OP_COUNT_];
	size_t n = 0;
	for (int op = 0; op < PIPELINE_GATE_OP_COUNT_; op++)
		if (json_object_get(obj, gate_op_names[op]))
			set[n++] = gate_op_names[op];
	if (n == 1)
		return 0;
	if (n == 0)
		return fail(c, mark, INVALID, "gate rule needs one of min, max, max_regression, min_improvement");
	return fail(c, mark, INVALID,
		    "gate rule must have exactly one of min, max, max_regression, "
		    "min_improvement; got \"%s\" and \"%s\"",
		    set[0], set[1]);
}

static int check_canny(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj)
{
	double lo = json_number_value(json_object_get(obj, "canny_low"));
	double hi = json_number_value(json_object_get(obj, "canny_high"));
	if (lo < hi)
		return 0;
	return fail(c, mark, INVALID, "\"%s.canny_low\" (%g) must be below canny_high (%g)", path, lo, hi);
}

/* Only training knows how to split itself across ranks (workers/jobs_train.c). */
static int check_resources(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj)
{
	struct pipeline_stage *st = base;
	if (st->workers <= 1 || st->kind == PIPELINE_KIND_TRAIN)
		return 0;
	return fail(c, mark, INVALID, "\"%s.workers\" (%lld) is only allowed on train stages (\"%s\" is a %s stage)",
		    path, (long long)st->workers, st->name, pipeline_kind_name(st->kind));
}

static int check_collect(struct yctx *c, const yaml_mark_t *mark, const char *path, void *base, json_t *obj)
{
	json_int_t max = json_integer_value(json_object_get(obj, "max_items"));
	json_int_t s = json_integer_value(json_object_get(obj, "min_sketches"));
	json_int_t p = json_integer_value(json_object_get(obj, "min_paintings"));
	if (max >= s && max >= p)
		return 0;
	return fail(c, mark, INVALID, "\"%s.max_items\" (%lld) must be at least min_sketches and min_paintings", path,
		    (long long)max);
}

/* ---- notify: webhook targets ---- */

static int walk_notify(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
		       const char *path, void *base)
{
	pipeline_t *p = c->p;
	char ipath[256];
	if (!val)
		return 0;
	if (val->type != YAML_SEQUENCE_NODE)
		return fail(c, &val->start_mark, INVALID, "\"%s\" must be a list of notify targets, got %s", path,
			    node_kind(val));
	size_t i = 0;
	for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++, i++) {
		yaml_node_t *item;
		int rc = node_get(c, *it, &val->start_mark, &item);
		if (rc < 0)
			return rc;
		if (i == NOTIFY_MAX_TARGETS)
			return fail(c, &item->start_mark, INVALID, "\"%s\" has more than %d targets", path,
				    NOTIFY_MAX_TARGETS);
		if (!p->notify && !(p->notify = json_array()))
			return fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
		json_t *t = json_object();
		if (!t || json_array_append_new(p->notify, t) < 0)
			return fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
		snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
		/* base is the target's JSON object: walk_notify_events fills its "events" */
		if ((rc = walk_map(c, item, &item->start_mark, &notify_schema, ipath, t, t)) < 0)
			return rc;
	}
	return 0;
}

static int walk_notify_events(struct yctx *c, const struct field *f, yaml_node_t *val, const yaml_mark_t *mark,
			      const char *path, void *base)
{
	json_t *target = base, *events = json_array();
	char q[128];
	if (!events || json_object_set_new(target, "events", events) < 0)
		return fail(c, mark, AT_ENOMEM, "out of memory");
	if (!val) {
		for (const char *const *k = notify_event_names; *k; k++)
			if (json_array_append_new(events, json_string(*k)) < 0)
				return fail(c, mark, AT_ENOMEM, "out of memory");
		return 0;
	}
	if (val->type != YAML_SEQUENCE_NODE)
		return fail(c, &val->start_mark, INVALID, "\"%s\" must be a list of event kinds, got %s", path,
			    node_kind(val));
	for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
		yaml_node_t *item;
		int rc = node_get(c, *it, &val->start_mark, &item);
		if (rc < 0)
			return rc;
		const char *const *k = notify_event_names;
		while (item->type == YAML_SCALAR_NODE && *k &&
		       (strlen(*k) != len_of(item) || memcmp(*k, text_of(item), len_of(item))))
			k++;
		if (item->type != YAML_SCALAR_NODE || !*k)
			return fail(c, &item->start_mark, INVALID,
				    "\"%s\" entries must be one of run.failed, gate.failed, model.promoted, "
				    "model.rolled_back, model.auto_rolled_back; got %s",
				    path,
				    item->type == YAML_SCALAR_NODE ? quote(q, sizeof q, text_of(item), len_of(item))
								   : node_kind(item));
		if (json_array_append_new(events, json_string(*k)) < 0)
			return fail(c, &item->start_mark, AT_ENOMEM, "out of memory");
	}
	return 0;
}

static int validate_webhook_url(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
				const struct value *v)
{
	if (v->slen > 2048)
		return fail(c, mark, INVALID, "\"%s\" is longer than 2048 bytes", path);
	if ((v->slen > 7 && !strncmp(v->s, "http://", 7)) || (v->slen > 8 && !strncmp(v->s, "https://", 8))) {
		for (size_t i = 0; i < v->slen; i++)
			if ((unsigned char)v->s[i] <= ' ' || v->s[i] == ',')
				return fail(c, mark, INVALID,
					    "\"%s\" must not contain spaces, control characters or commas", path);
		return 0;
	}
	return fail(c, mark, INVALID, "\"%s\" must be an http:// or https:// URL, got \"%.*s\"", path,
		    v->slen > 40 ? 40 : (int)v->slen, v->s);
}

static int validate_env_name(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
			     const struct value *v)
{
	int ok = v->slen > 0 && v->slen <= 128 && !(v->s[0] >= '0' && v->s[0] <= '9');
	for (size_t i = 0; ok && i < v->slen; i++)
		ok = (v->s[i] >= 'A' && v->s[i] <= 'Z') || (v->s[i] >= '0' && v->s[i] <= '9') || v->s[i] == '_';
	if (ok)
		return 0;
	return fail(c, mark, INVALID, "\"%s\" must name an environment variable ([A-Z_][A-Z0-9_]*), got \"%.*s\"", path,
		    v->slen > 40 ? 40 : (int)v->slen, v->s);
}

static int validate_multiple_of_4(struct yctx *c, const struct field *f, const yaml_mark_t *mark, const char *path,
				  const struct value *v)
{
	if (v->i % 4 == 0)
		return 0;
	return fail(c, mark, INVALID, "\"%s\" must be a multiple of 4, got %lld", path, (long long)v->i);
}

/* ---- whole-document checks ---- */

/* Needs that name no stage, with a suggestion; cycles are pipeline_finalize's. */
static int check_needs(struct yctx *c)
{
	pipeline_t *p = c->p;
	char dm[96];
	const char **names = calloc(p->n_stages ? p->n_stages : 1, sizeof *names);
	int rc = 0;
	if (!names)
		return fail_at(c, 1, 1, AT_ENOMEM, "out of memory");
	for (size_t s = 0; s < p->n_stages; s++)
		names[s] = p->stages[s].name;
	for (size_t s = 0; s < p->n_stages && rc == 0; s++)
		for (size_t k = 0; k < p->stages[s].n_needs && rc == 0; k++) {
			const char *need = p->stages[s].needs[k];
			if (pipeline_stage_index(p, need) < 0)
				rc = fail(c, &c->marks[s].needs[k], INVALID,
					  "stage \"%s\" needs unknown stage \"%s\"%s", p->stages[s].name, need,
					  did_you_mean(dm, sizeof dm, need, names, p->n_stages));
		}
	free(names);
	return rc;
}

/* Line and column (1-based, columns in characters) of a byte offset. */
static void position_of(const char *text, size_t len, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch == '\n' || (ch == '\r' && (i + 1 >= len || text[i + 1] != '\n'))) {
			(*line)++;
			*col = 1;
		} else if ((ch & 0xc0) != 0x80 && ch != '\r') {
			(*col)++;
		}
	}
}

/*
 * libyaml reports bad UTF-8 with a byte offset and no mark; checking first
 * gives a line and column, and also rejects the control characters YAML
 * forbids.
 */
static int check_utf8(struct yctx *c, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	while (i < len) {
		unsigned ch = s[i], cp, n;
		if (ch < 0x80)
			cp = ch, n = 1;
		else if (ch >= 0xc2 && ch <= 0xdf)
			cp = ch & 0x1f, n = 2;
		else if (ch >= 0xe0 && ch <= 0xef)
			cp = ch & 0x0f, n = 3;
		else if (ch >= 0xf0 && ch <= 0xf4)
			cp = ch & 0x07, n = 4;
		else
			goto bad;
		if (len - i < n)
			goto bad;
		for (unsigned k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			goto bad;
		if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || (cp >= 0x7f && cp <= 0x9f && cp != 0x85) ||
		    cp == 0xfffe || cp == 0xffff) {
			int line, col;
			position_of(text, len, i, &line, &col);
			return fail_at(c, line, col, AT_EPARSE, "control character U+%04X is not allowed in YAML", cp);
		}
		i += n;
		continue;
	bad : {
		int line, col;
		position_of(text, len, i, &line, &col);
		return fail_at(c, line, col, AT_EPARSE, "invalid UTF-8 (byte 0x%02x): pipeline files must be UTF-8",
			       s[i]);
	}
	}
	return 0;
}

static int syntax_error(struct yctx *c, yaml_parser_t *parser, const char *text, size_t len)
{
	const char *problem = parser->problem ? parser->problem : "unknown error";
	if (parser->error == YAML_MEMORY_ERROR)
		return fail_at(c, 1, 1, AT_ENOMEM, "out of memory");
	if (parser->error == YAML_READER_ERROR) {
		int line, col;
		position_of(text, len, parser->problem_offset, &line, &col);
		return fail_at(c, line, col, AT_EPARSE, "YAML error: %s", problem);
	}
	if (parser->context)
		return fail(c, &parser->problem_mark, AT_EPARSE, "YAML syntax error: %s (%s at %d:%d)", problem,
			    parser->context, (int)parser->context_mark.line + 1, (int)parser->context_mark.column + 1);
	return fail(c, &parser->problem_mark, AT_EPARSE, "YAML syntax error: %s", problem);
}

/* ---- the first pass: bounds on the event stream ---- */

/*
 * Runs before yaml_parser_load and stops at the first event past a bound.
 * The walk's own bounds (node visits, depth) apply only once the document is
 * built, and building it is where deep input hurts: libyaml's scanner keeps
 * one possible simple key per open flow level and re-checks all of them for
 * every token, so `[[[…` is quadratic in its depth (60k levels: 9 s; a
 * 200 KB body: minutes) on a threadpool thread that image decoding shares.
 * Events are produced as the scanner goes, so stopping at level
 * PIPELINE_YAML_MAX_NESTING costs at most the scanner's 1024-character simple
 * key lookahead at that depth. Nodes are counted as written (an alias is one
 * event here; the walk counts it again each time it is used), so a document
 * the walk would accept never trips this cap.
 */
static int bounds_pass(struct yctx *c, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int depth = 0, rc = 0;
	size_t nodes = 0;

	if (!yaml_parser_initialize(&parser))
		return fail_at(c, 1, 1, AT_ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = syntax_error(c, &parser, text, len);
			break;
		}
		yaml_event_type_t t = ev.type;
		if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
			if (++depth > PIPELINE_YAML_MAX_NESTING)
				rc = fail(c, &ev.start_mark, AT_ETOOBIG, "value nested more than %d levels deep",
					  PIPELINE_YAML_MAX_NESTING);
		} else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
			depth--;
		}
		if (rc == 0 &&
		    (t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT || t == YAML_SEQUENCE_START_EVENT ||
		     t == YAML_MAPPING_START_EVENT) &&
		    ++nodes > PIPELINE_YAML_MAX_NODES)
			rc = fail(c, &ev.start_mark, AT_ETOOBIG,
				  "document too large: more than %d YAML nodes "
				  "(aliases count again each time they are used)",
				  PIPELINE_YAML_MAX_NODES);
		yaml_event_delete(&ev);
		if (rc < 0 || t == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&parser);
	return rc;
}

/* ---- entry points ---- */

int pipeline_yaml_parse(const char *filename, const char *text, size_t len, pipeline_t **out,
			struct pipeline_error *err)
{
	struct pipeline_error dummy;
	struct yctx c = {.file = filename ? filename : "<input>", .err = err ? err : &dummy};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	bool have_parser = false, have_doc = false;
	int rc = 0;

	memset(c.err, 0, sizeof *c.err);
	if (!out || (!text && len))
		return fail_at(&c, 1, 1, AT_EINVAL, "invalid argument");
	*out = NULL;
	if (len > PIPELINE_YAML_MAX_BYTES)
		return fail_at(&c, 1, 1, AT_ETOOBIG, "pipeline file is larger than %zu bytes", PIPELINE_YAML_MAX_BYTES);
	if (!text)
		text = "";
	if ((rc = check_utf8(&c, text, len)) < 0)
		return rc;
	if ((rc = bounds_pass(&c, text, len)) < 0)
		return rc;
	if (!yaml_parser_initialize(&parser))
		return fail_at(&c, 1, 1, AT_ENOMEM, "out of memory");
	have_parser = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = syntax_error(&c, &parser, text, len);
		goto out;
	}
	have_doc = true;
	c.doc = &doc;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) {
		rc = fail_at(&c, 1, 1, INVALID, "empty document: expected a pipeline (pipeline:, model:, stages:)");
		goto out;
	}
	/* a second document would be silently ignored by a one-document load */
	if (!yaml_parser_load(&parser, &extra)) {
		rc = syntax_error(&c, &parser, text, len);
		goto out;
	}
	yaml_node_t *root2 = yaml_document_get_root_node(&extra);
	if (root2)
		rc = fail(&c, &extra.start_mark, INVALID, "expected one YAML document, found a second one");
	yaml_document_delete(&extra);
	if (rc < 0)
		goto out;
	if (root->type != YAML_MAPPING_NODE) {
		rc = fail(&c, &root->start_mark, INVALID,
			  "a pipeline must be a mapping (pipeline:, model:, stages:), got %s", node_kind(root));
		goto out;
	}
	c.visited = 1;
	if (!(c.p = pipeline_new())) {
		rc = fail_at(&c, 1, 1, AT_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = walk_map(&c, root, &root->start_mark, &top_schema, "", c.p, NULL)) < 0)
		goto out;
	if ((rc = check_needs(&c)) < 0)
		goto out;
	struct pipeline_dag_error de;
	if ((rc = pipeline_finalize(c.p, &de)) < 0) {
		if (rc == AT_EUNPROCESSABLE && de.stage < c.n_marks && de.need < c.marks[de.stage].n_needs)
			fail(&c, &c.marks[de.stage].needs[de.need], rc, "%s", de.message);
		goto out;
	}
	*out = c.p;
	c.p = NULL;
out:
	if (rc < 0 && !c.failed)
		fail_at(&c, 1, 1, rc, "%s", at_strerror(rc));
	pipeline_free(c.p);
	for (size_t i = 0; i < c.n_marks; i++)
		free(c.marks[i].needs);
	free(c.marks);
	if (have_doc)
		yaml_document_delete(&doc);
	if (have_parser)
		yaml_parser_delete(&parser);
	return rc;
}

int pipeline_yaml_load_file(const char *path, pipeline_t **out, struct pipeline_error *err)
{
	struct pipeline_error dummy;
	struct pipeline_error *e = err ? err : &dummy;
	char *text = malloc(PIPELINE_YAML_MAX_BYTES + 1);
	FILE *f = NULL;
	int rc;
	*out = NULL;
	memset(e, 0, sizeof *e);
	if (!text)
		return AT_ENOMEM;
	if (!(f = fopen(path, "rb"))) {
		snprintf(e->message, sizeof e->message, "cannot open: %s", strerror(errno));
		rc = AT_EIO;
		goto out;
	}
	size_t n = fread(text, 1, PIPELINE_YAML_MAX_BYTES + 1, f);
	if (ferror(f)) {
		snprintf(e->message, sizeof e->message, "cannot read: %s", strerror(errno));
		rc = AT_EIO;
		goto out;
	}
	rc = pipeline_yaml_parse(path, text, n, out, err);
out:
	if (rc == AT_EIO) {
		e->line = e->column = 0;
		snprintf(e->text, sizeof e->text, "%s: %s", path, e->message);
	}
	if (f)
		fclose(f);
	free(text);
	return rc;
}

/* ---- the reference, generated from the tables ---- */

static int ref_cell(struct at_buf *out, const char *s)
{
	int rc = 0;
	for (; *s && rc == 0; s++)
		rc = *s == '|' ? at_buf_addstr(out, "\\|") : at_buf_add(out, s, 1);
	return rc;
}

static int ref_rows(struct at_buf *out, const struct schema *s, const char *prefix)
{
	char key[256], range[128], lo[32], hi[32];
	int rc = 0;
	for (size_t i = 0; i < s->n && rc == 0; i++) {
		const struct field *f = &s->fields[i];
		const char *type = f->type == T_STR        ? "string"
				   : f->type == T_NAME     ? "name"
				   : f->type == T_INT      ? "int"
				   : f->type == T_FLOAT    ? "float"
				   : f->type == T_BOOL     ? "bool"
				   : f->type == T_DURATION ? "duration"
				   : f->type == T_ENUM     ? "enum"
				   : f->type == T_MAP      ? "mapping"
							   : f->type_doc;
		range[0] = 0;
		fmt_bound(lo, sizeof lo, f, f->min);
		fmt_bound(hi, sizeof hi, f, f->max);
		if (f->type == T_NAME)
			snprintf(range, sizeof range, "`" NAME_RULE "`");
		else if (f->choices)
			for (size_t k = 0; f->choices[k]; k++)
				snprintf(range + strlen(range), sizeof range - strlen(range), "%s`%s`", k ? ", " : "",
					 f->choices[k]);
		else if (f->has_min && f->has_max)
			snprintf(range, sizeof range, "%s .. %s", lo, hi);
		else if (f->has_min)
			snprintf(range, sizeof range, ">= %s", lo);
		else if (f->has_max)
			snprintf(range, sizeof range, "<= %s", hi);
		snprintf(key, sizeof key, "%s%s", prefix, f->name);
		rc = at_buf_printf(out, "| `%s` | %s | ", key, type);
		if (rc == 0)
			rc = f->required ? at_buf_addstr(out, "**required**")
			     : f->def    ? at_buf_printf(out, *f->def ? "`%s`" : "`\"\"`", f->def)
					 : at_buf_addstr(out, "—");
		if (rc == 0)
			rc = at_buf_printf(out, " | %s | ", range);
		if (rc == 0)
			rc = ref_cell(out, f->doc);
		if (rc == 0)
			rc = at_buf_addstr(out, " |\n");
		if (rc == 0 && f->type == T_MAP) {
			snprintf(key, sizeof key, "%s%s.", prefix, f->name);
			rc = ref_rows(out, f->sub, key);
		}
	}
	return rc;
}

static int ref_table(struct at_buf *out, const char *heading, const struct schema *s, const char *prefix)
{
	int rc = at_buf_printf(out, "%s\n\n", heading);
	if (rc == 0 && s->n == 0)
		return at_buf_addstr(out, "No params.\n\n");
	if (rc == 0)
		rc = at_buf_addstr(out, "| key | type | default | range | description |\n|---|---|---|---|---|\n");
	if (rc == 0)
		rc = ref_rows(out, s, prefix);
	if (rc == 0)
		rc = at_buf_addstr(out, "\n");
	return rc;
}

int pipeline_yaml_reference(struct at_buf *out)
{
	int rc = ref_table(out, "### Top level", &top_schema, "");
	if (rc == 0)
		rc = ref_table(out, "### A stage (`stages.NAME`)", &stage_schema, "");
	if (rc == 0)
		rc = ref_table(out,
			       "### A gate rule (`stages.NAME.gate[]`): exactly one of min, max, max_regression, "
			       "min_improvement",
			       &gate_rule_schema, "");
	if (rc == 0)
		rc = ref_table(out,
			       "### A notify target (`notify[]`): events are run.failed, gate.failed, model.promoted, "
			       "model.rolled_back, model.auto_rolled_back (docs/alerts.md)",
			       &notify_schema, "");
	if (rc == 0)
		rc = at_buf_addstr(out, "### Stage kinds\n\n| kind | runs as job kind | test only | what it does |\n"
					"|---|---|---|---|\n");
#define KIND_ROW(e, fn, name, job, test, cache, doc) \
	if (rc == 0)                                 \
		rc = at_buf_printf(out, "| `%s` | `%s` | %s | %s |\n", name, job, test ? "yes" : "no", doc);
	STAGE_KIND_MAP(KIND_ROW)
#undef KIND_ROW
	if (rc == 0)
		rc = at_buf_addstr(out, "\n");
	for (int k = 0; k < PIPELINE_KIND_COUNT_ && rc == 0; k++) {
		char heading[128];
		snprintf(heading, sizeof heading, "### `params` of a `%s` stage",
			 pipeline_kind_name((enum pipeline_kind)k));
		rc = ref_table(out, heading, &kind_params[k], "");
		for (size_t i = 0; i < kind_params[k].n && rc == 0; i++)
			if (kind_params[k].fields[i].type == T_MAP && kind_params[k].fields[i].sub->open)
				rc = at_buf_printf(out,
						   "Keys of `%s` not listed here pass through to the worker unchecked "
						   "(a near miss of a listed key is still an error).\n\n",
						   kind_params[k].fields[i].name);
	}
	return rc;
}
