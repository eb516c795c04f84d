/*
 * works_api.c — atelierd's side of the gallery (see works_api.h). Works are rows of
 * `works` with their images as bytea (sql/013_gallery.sql says why); the
 * node that took a work from the page checked its form with lib/works.h,
 * and it is checked here again with the same functions: a node token is not
 * a licence to store anything.
 *
 * The sketch's hash is ingest's (image_normalize() over the sketch domain,
 * sha256 of the normalised pixels), computed on the threadpool, so the
 * trigger that withdraws works with their sketch matches the drawing however
 * it was encoded.
 */
#include "works_api.h"

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "form.h"
#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "multipart.h"
#include "works.h"
#include "receipt.h"

/* ---- POST /v1/works ---- */

struct work_in {
	uv_work_t work;
	http_req_t *req;
	struct app *app;
	uint8_t *sketch, *painting; /* copies: the body is not ours on the threadpool */
	size_t sketch_len, painting_len;
	int sketch_fmt, painting_fmt;
	json_t *style;
	char style_key[WORKS_STYLE_KEY_MAX];
	char *title, *name, *model;
	char model_version[24];
	char receipt_hex[65];
	/* threadpool results */
	int rc;
	char why[160];
	char sketch_sha[65];
};

static void work_in_free(struct work_in *w)
{
	if (!w)
		return;
	free(w->sketch);
	free(w->painting);
	json_decref(w->style);
	free(w->title);
	free(w->name);
	free(w->model);
	free(w);
}

static const char *type_of(int fmt) { return fmt == IMAGE_JPEG ? "image/jpeg" : "image/png"; }

static void check_work(uv_work_t *uw)
{
	struct work_in *w = uw->data;
	struct image_opts o;
	image_opts_init(&o, IMAGE_SKETCH);
	o.min_ink = WORKS_MIN_INK; /* a work is not training data: any drawing with ink */
	o.max_ink = 1;
	o.max_pixels = WORKS_IMAGE_PIXELS;
	struct image_norm n = {.ink_ratio = -1};
	w->rc = image_normalize(w->sketch, w->sketch_len, &o, &n, w->why, sizeof w->why);
	if (w->rc == 0)
		memcpy(w->sketch_sha, n.sha256_hex, 65);
	image_norm_free(&n);
	if (w->rc < 0)
		return;
	struct image_raw r = {0};
	w->rc = image_decode(w->painting, w->painting_len, 3, WORKS_IMAGE_PIXELS, &r, w->why, sizeof w->why);
	image_raw_free(&r);
}

static void on_work_stored(void *arg, int status, PGresult *res)
{
	struct work_in *w = arg;
	if (status < 0 || PQntuples(res) != 1) {
		api_log_db_error(w->req, status < 0 ? res : NULL);
		http_reply_err(w->req, AT_EDB, "could not store the work", NULL);
	} else {
		/* column 1: whether this call inserted it (xmax = 0) or found it */
		int dup = strcmp(PQgetvalue(res, 0, 1), "f") == 0;
		http_reply_json(w->req, dup ? 200 : 201,
				json_pack("{sI,sb,ss}", "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
					  "duplicate", dup, "status", PQgetvalue(res, 0, 2)));
	}
	work_in_free(w);
}

static void check_work_done(uv_work_t *uw, int status)
{
	struct work_in *w = uw->data;
	if (status < 0 || w->rc < 0) {
		int rc = status < 0 ? AT_EUNAVAILABLE : w->rc;
		http_reply_err(w->req, rc, status < 0 ? "server shutting down" : "image rejected",
			       json_pack("{ss}", "reason", w->why));
		work_in_free(w);
		return;
	}
	char *style = json_dumps(w->style, JSON_COMPACT);
	const char *node = http_req_token_node(w->req);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, w->title);
	db_param_text(&p, w->name);
	db_param_text(&p, style);
	db_param_text(&p, w->style_key);
	db_param_text(&p, w->model);
	db_param_text(&p, w->model_version[0] ? w->model_version : NULL);
	db_param_text(&p, node && *node ? node : NULL);
	db_param_bin(&p, w->sketch, w->sketch_len);
	db_param_text(&p, type_of(w->sketch_fmt));
	db_param_bin(&p, w->painting, w->painting_len);
	db_param_text(&p, type_of(w->painting_fmt));
	db_param_text(&p, w->sketch_sha);
	db_param_text(&p, w->receipt_hex);
	/* Delivery is at least once (a node resends when the answer was lost):
	 * the receipt's hash makes a resend find the row it made. The no-op
	 * update lets RETURNING see that row; the trigger leaves it alone. */
	int rc = db_query(w->app->db,
			  "INSERT INTO works (title, author, style, style_key, model, model_version, node, sketch, "
			  "sketch_type, painting, painting_type, sketch_sha256, receipt_sha256) "
			  "VALUES ($1, $2, $3::jsonb, $4, $5, $6::int, $7, $8, $9, $10, $11, decode($12, 'hex'), "
			  "decode($13, 'hex')) ON CONFLICT (receipt_sha256) DO UPDATE SET status = works.status "
			  "RETURNING id, xmax = 0, status",
			  &p, on_work_stored, w);
	free(style);
	if (rc < 0) {
		http_reply_err(w->req, AT_EDB, "database unavailable", NULL);
		work_in_free(w);
	}
}

static void post_work(http_req_t *req)
{
	struct app *app = http_req_app(req);
	struct multipart_part parts[12];
	size_t n = 0;
	char why[160] = "";
	if (form_parse(req, parts, 12, &n, "sketch, painting, style and receipt_sha256") < 0)
		return;
	struct work_in *w = calloc(1, sizeof *w);
	if (!w) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	w->req = req;
	w->app = app;
	const struct multipart_part *f, *sk, *pt;
	if (works_image_part(req, parts, n, "sketch", &sk, &w->sketch_fmt) < 0 ||
	    works_image_part(req, parts, n, "painting", &pt, &w->painting_fmt) < 0)
		goto refused;
	w->sketch_len = sk->len;
	w->painting_len = pt->len;
	f = multipart_get(parts, n, "style");
	if (!f || works_style_parse((const char *)f->data, f->len, &w->style, w->style_key, why, sizeof why) < 0) {
		http_reply_err(req, AT_EUNPROCESSABLE, "bad style",
			       json_pack("{ss,ss}", "field", "style", "reason", f ? why : "missing"));
		goto refused;
	}
	f = multipart_get(parts, n, "receipt_sha256");
	if (!f || f->len != 64 || strspn((const char *)f->data, "0123456789abcdef") < 64) {
		http_reply_err(req, AT_EINVAL, "receipt_sha256 must be 64 lowercase hex digits",
			       json_pack("{ss}", "field", "receipt_sha256"));
		goto refused;
	}
	memcpy(w->receipt_hex, f->data, 64);
	f = multipart_get(parts, n, "model_version");
	if (f && f->len) {
		int64_t v;
		char tmp[24];
		if (f->len >= sizeof tmp ||
		    (memcpy(tmp, f->data, f->len), tmp[f->len] = 0, http_parse_id(tmp, &v)) < 0) {
			http_reply_err(req, AT_EINVAL, "model_version must be a positive integer",
				       json_pack("{ss}", "field", "model_version"));
			goto refused;
		}
		memcpy(w->model_version, tmp, f->len + 1);
	}
	if (works_text_part(req, parts, n, "title", WORKS_TITLE_MAX, &w->title) < 0 ||
	    works_text_part(req, parts, n, "name", WORKS_NAME_MAX, &w->name) < 0 ||
	    works_text_part(req, parts, n, "model", 64, &w->model) < 0)
		goto refused;
	w->sketch = malloc(w->sketch_len);
	w->painting = malloc(w->painting_len);
	if (!w->sketch || !w->painting) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		goto refused;
	}
	memcpy(w->sketch, sk->data, w->sketch_len);
	memcpy(w->painting, pt->data, w->painting_len);
	w->work.data = w;
	if (uv_queue_work(app->loop, &w->work, check_work, check_work_done) == 0)
		return;
	http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule image decoding", NULL);
refused:
	work_in_free(w);
}

/* ---- reading ---- */

/* GET /v1/works?status=&style=&before=&limit= : newest first, paged by id */
static void list_works(http_req_t *req)
{
	const char *status = http_req_query(req, "status");
	const char *style = http_req_query(req, "style");
	const char *before = http_req_query(req, "before");
	const char *limit = http_req_query(req, "limit");
	if (status && strcmp(status, "published") && strcmp(status, "hidden") && strcmp(status, "withdrawn")) {
		http_reply_err(req, AT_EINVAL, "status is published, hidden or withdrawn",
			       json_pack("{ss}", "field", "status"));
		return;
	}
	if (style && works_style_key_valid(style) < 0) {
		http_reply_err(req, AT_EINVAL, "style is a style key (\"7\", \"7+9@0.50\", \"reference\")",
			       json_pack("{ss}", "field", "style"));
		return;
	}
	if (before && !api_positive_id(req, before, "before"))
		return;
	long long lim = limit ? api_positive_id(req, limit, "limit") : 50;
	if (!lim)
		return;
	char lbuf[24];
	snprintf(lbuf, sizeof lbuf, "%lld", lim > 500 ? 500 : lim);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, status);
	db_param_text(&p, style);
	db_param_text(&p, before);
	db_param_text(&p, lbuf);
	api_reply_sql_json(req,
			   "SELECT json_build_object('works', coalesce(json_agg(j ORDER BY id DESC), '[]'), 'next', "
			   "CASE WHEN count(*) = $4::int THEN min(id) END)::text FROM (SELECT id, j FROM works_json "
			   "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR style_key = $2) "
			   "AND ($3::bigint IS NULL OR id < $3::bigint) ORDER BY id DESC LIMIT $4::int) s",
			   &p, "no works");
}

/* GET /v1/works/changes?after=REV&limit=N : every change after a cursor */
static void works_changes(http_req_t *req)
{
	const char *after = http_req_query(req, "after");
	const char *limit = http_req_query(req, "limit");
	int64_t a = 0;
	if (after && strcmp(after, "0") != 0 && !(a = api_positive_id(req, after, "after")))
		return;
	long long lim = limit ? api_positive_id(req, limit, "limit") : 500;
	if (!lim)
		return;
	char abuf[24], lbuf[24];
	snprintf(abuf, sizeof abuf, "%lld", (long long)a);
	snprintf(lbuf, sizeof lbuf, "%lld", lim > 2000 ? 2000 : lim);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, abuf);
	db_param_text(&p, lbuf);
	api_reply_sql_json(req,
			   "SELECT json_build_object('works', coalesce(json_agg(j ORDER BY rev), '[]'), 'rev', "
			   "coalesce(max(rev), $1::bigint), 'more', count(*) = $2::int)::text FROM (SELECT rev, j "
			   "FROM works_json WHERE rev > $1::bigint ORDER BY rev LIMIT $2::int) s",
			   &p, "no changes");
}

static void get_work(http_req_t *req)
{
	int64_t id;
	if (http_req_param_id(req, "id", &id) < 0)
		return;
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, http_req_param(req, "id"));
	api_reply_sql_json(req, "SELECT j::text FROM works_json WHERE id = $1::bigint", &p, "no such work");
}

struct image_fetch {
	http_req_t *req;
};

static void on_image(void *arg, int status, PGresult *res)
{
	http_req_t *req = arg;
	if (status < 0) {
		api_log_db_error(req, res);
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
	} else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		http_reply_err(req, AT_ENOTFOUND, "no such work, or it was withdrawn",
			       json_pack("{ss}", "path", http_req_path(req)));
	} else {
		/* hidden or withdrawn later: a cache must ask again */
		http_req_add_header(req, "Cache-Control", "private, no-cache");
		http_reply_bytes(req, 200, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0),
				 (size_t)PQgetlength(res, 0, 0));
	}
}

static void get_work_image(http_req_t *req)
{
	struct app *app = http_req_app(req);
	int64_t id;
	if (http_req_param_id(req, "id", &id) < 0)
		return;
	const char *path = http_req_path(req);
	size_t pl = strlen(path);
	int sketch = pl > 7 && strcmp(path + pl - 7, "/sketch") == 0;
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, http_req_param(req, "id"));
	const char *sql = sketch ? "SELECT sketch, sketch_type FROM works WHERE id = $1::bigint"
				 : "SELECT painting, painting_type FROM works WHERE id = $1::bigint";
	if (db_query_binary(app->db, sql, &p, on_image, req) < 0)
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
}

/* ---- changing ---- */

static void set_status(http_req_t *req, const char *to)
{
	int64_t id;
	if (http_req_param_id(req, "id", &id) < 0)
		return;
	const char *who = http_req_principal(req);
	char by[160];
	snprintf(by, sizeof by, "operator:%s", who && *who ? who : "?");
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, http_req_param(req, "id"));
	db_param_text(&p, to);
	db_param_text(&p, by);
	/* a withdrawn work stays withdrawn: only its holder or its sketch decide */
	api_reply_sql_json(req,
			   "UPDATE works SET status = $2, changed_by = $3 WHERE id = $1::bigint "
			   "AND status <> 'withdrawn' RETURNING atelier_work_json(works)::text",
			   &p, "no such work, or it was withdrawn");
}

static void hide_work(http_req_t *req) { set_status(req, "hidden"); }
static void unhide_work(http_req_t *req) { set_status(req, "published"); }

/* X-Atelier-Receipt: its hash, or replies 404 (a malformed receipt names no
 * work, and says nothing about which exist) */
static int receipt_of(http_req_t *req, char hex[65])
{
	uint8_t sha[32];
	if (receipt_of_request(req, "work", NULL, sha) < 0)
		return AT_ENOTFOUND;
	at_hex_encode(hex, sha, sizeof sha);
	return 0;
}

static void get_by_receipt(http_req_t *req)
{
	char hex[65];
	if (receipt_of(req, hex) < 0)
		return;
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, hex);
	api_reply_sql_json(req,
			   "SELECT json_build_object('kind', 'work', 'id', id, 'status', status, 'created_at', "
			   "created_at, 'changed_at', changed_at, 'title', title, 'name', author, 'style', style, "
			   "'style_key', style_key, 'model_version', model_version)::text "
			   "FROM works WHERE receipt_sha256 = decode($1, 'hex')",
			   &p, "no work has this receipt");
}

static void delete_by_receipt(http_req_t *req)
{
	char hex[65];
	if (receipt_of(req, hex) < 0)
		return;
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, hex);
	api_reply_sql_json(req,
			   "UPDATE works SET status = 'withdrawn', changed_by = 'receipt' "
			   "WHERE receipt_sha256 = decode($1, 'hex') RETURNING json_build_object('kind', 'work', "
			   "'id', id, 'status', status, 'withdrawn', true)::text",
			   &p, "no work has this receipt");
}

/* ---- routes ---- */

#define S_WORK                                                                                                        \
	API_OBJECT(                                                                                                   \
		"\"id\":" API_INT ",\"rev\":" API_INT ",\"status\":{\"type\":\"string\",\"enum\":[\"published\","     \
		"\"hidden\",\"withdrawn\"]},\"created_at\":" API_TIME ",\"changed_at\":" API_TIME                     \
		",\"title\":" API_NULL("string") ",\"name\":" API_NULL(                                               \
			"string") ",\"style\":" API_OBJ ",\"style_key\":" API_STR                                     \
				  ",\"model\":" API_NULL("string") ",\"model_version\":" API_NULL(                    \
					  "integer") ",\"node\":" API_NULL("string") ",\"sketch_type\":" API_STR      \
										     ",\"painting_type\":" API_STR    \
										     ",\"sketch_sha256\":" API_SHA256 \
										     ",\"sketch_bytes\":" API_INT     \
										     ",\"painting_bytes\":" API_INT)
#define R_NO_RECEIPT                                                                                                   \
	"{\"404\":{\"description\":\"no work has this receipt (a wrong one changes nothing)\",\"content\":" HTTP_JSON( \
		"{\"$ref\":\"#/components/schemas/Error\"}") "}}"
#define P_WORK_ID "{\"id\":" API_ID "}"
#define S_IMG "{\"image/png\":" HTTP_BINARY ",\"image/jpeg\":" HTTP_BINARY "}"

/* Specific patterns first: "changes" and "by-receipt" would match "{id}" only
 * to be refused as ids. */
const struct http_route works_api_routes[] = {
	{"POST", "/v1/works", post_work, ROLE_NODE | ROLE_OPERATOR,
	 "store a published work (multipart: sketch, painting, style, receipt_sha256 [+ title, name, model, "
	 "model_version]); idempotent by receipt",
	 .op = "createWork", .tag = "gallery",
	 .body = "{\"multipart/form-data\":{\"type\":\"object\",\"required\":[\"sketch\",\"painting\",\"style\","
		 "\"receipt_sha256\"],\"properties\":{\"sketch\":" HTTP_BINARY ",\"painting\":" HTTP_BINARY
		 ",\"style\":{\"type\":\"string\",\"description\":\"JSON: {style}, {style, style2, alpha} or "
		 "{reference: true}\"},\"receipt_sha256\":" API_SHA256 ",\"title\":{\"type\":\"string\","
		 "\"maxLength\":480},\"name\":{\"type\":\"string\",\"maxLength\":256},\"model\":" API_STR
		 ",\"model_version\":" API_INT "}}}",
	 .status = 201,
	 .reply = HTTP_JSON(API_OBJECT("\"id\":" API_INT ",\"duplicate\":" API_BOOL ",\"status\":" API_STR)),
	 .replies =
		 "{\"200\":{\"description\":\"already stored under this receipt (duplicate: true)\",\"content\":" HTTP_JSON(
			 API_OBJECT("\"id\":" API_INT ",\"duplicate\":" API_BOOL ",\"status\":" API_STR)) "}}"},
	{"GET", "/v1/works", list_works, ROLE_ANY, "works, newest first (?status, ?style key, ?before id, ?limit)",
	 .op = "listWorks", .tag = "gallery",
	 .params = "{\"status\":{\"type\":\"string\",\"enum\":[\"published\",\"hidden\","
		   "\"withdrawn\"]},\"style\":{\"type\":\"string\"},\"before\":{"
		   "\"type\":\"integer\"},\"limit\":{\"type\":\"integer\",\"maximum\":500}}",
	 .reply = HTTP_JSON(API_OBJECT("\"works\":" API_ARRAY(S_WORK) ",\"next\":" API_NULL("integer")))},
	{"GET", "/v1/works/changes", works_changes, ROLE_ANY,
	 "every work changed after a cursor (?after rev, ?limit), oldest change first: the nodes' feed",
	 .op = "workChanges", .tag = "gallery",
	 .params = "{\"after\":{\"type\":\"integer\"},\"limit\":{\"type\":"
		   "\"integer\",\"maximum\":2000}}",
	 .reply = HTTP_JSON(API_OBJECT("\"works\":" API_ARRAY(S_WORK) ",\"rev\":" API_INT ",\"more\":" API_BOOL))},
	{"GET", "/v1/works/by-receipt", get_by_receipt, ROLE_NODE | ROLE_OPERATOR,
	 "the work a receipt names (header X-Atelier-Receipt)", .op = "getWorkByReceipt", .tag = "gallery",
	 .reply = HTTP_JSON(API_OBJECT("\"kind\":" API_STR ",\"id\":" API_INT ",\"status\":" API_STR
				       ",\"created_at\":" API_TIME ",\"changed_at\":" API_TIME
				       ",\"title\":" API_NULL("string") ",\"name\":" API_NULL(
					       "string") ",\"style\":" API_OBJ ",\"style_key\":" API_STR
							 ",\"model_version\":" API_NULL("integer"))),
	 .replies = R_NO_RECEIPT},
	{"DELETE", "/v1/works/by-receipt", delete_by_receipt, ROLE_NODE | ROLE_OPERATOR,
	 "withdraw the work a receipt names: its pixels are erased", .op = "withdrawWorkByReceipt", .tag = "gallery",
	 .reply = HTTP_JSON(
		 API_OBJECT("\"kind\":" API_STR ",\"id\":" API_INT ",\"status\":" API_STR ",\"withdrawn\":" API_BOOL)),
	 .replies = R_NO_RECEIPT},
	{"GET", "/v1/works/{id}/sketch", get_work_image, ROLE_ANY, "a work's sketch as published",
	 .op = "getWorkSketch", .tag = "gallery", .params = P_WORK_ID, .reply = S_IMG},
	{"GET", "/v1/works/{id}/painting", get_work_image, ROLE_ANY, "a work's painting as published",
	 .op = "getWorkPainting", .tag = "gallery", .params = P_WORK_ID, .reply = S_IMG},
	{"POST", "/v1/works/{id}/hide", hide_work, ROLE_OPERATOR, "hide a work from every gallery", .op = "hideWork",
	 .tag = "gallery", .params = P_WORK_ID, .reply = HTTP_JSON(S_WORK)},
	{"POST", "/v1/works/{id}/unhide", unhide_work, ROLE_OPERATOR, "show a hidden work again", .op = "unhideWork",
	 .tag = "gallery", .params = P_WORK_ID, .reply = HTTP_JSON(S_WORK)},
	{"GET", "/v1/works/{id}", get_work, ROLE_ANY, "a work's metadata", .op = "getWork", .tag = "gallery",
	 .params = P_WORK_ID, .reply = HTTP_JSON(S_WORK)},
};
const size_t works_api_nroutes = sizeof works_api_routes / sizeof works_api_routes[0];
