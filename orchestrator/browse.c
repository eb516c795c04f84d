/*
 * browse.c — lists of sketches, paintings and rejected uploads for the
 * operator (see browse.h).
 *
 * Pagination: newest first, by id. A page of `limit` rows (1..500, default
 * 100) carries next_cursor when more may follow; the cursor is opaque to
 * clients (hex of "i<last id>") so the key can change without breaking them.
 * A list never carries pixels: each image row names its PNG's URL, which is
 * immutable (content-addressed row) and served with a one-year cache.
 */
#include "browse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

#define BROWSE_DEFAULT_LIMIT 100
#define BROWSE_MAX_LIMIT 500

/* ---- query parameters ---- */

/* The cursor's id, or 0 when absent; -1 after replying 400. */
static long long parse_cursor(http_req_t *req)
{
	const char *c = http_req_query(req, "cursor");
	if (!c || !c[0])
		return 0;
	size_t n = strlen(c);
	char plain[24];
	int ok = n % 2 == 0 && n / 2 < sizeof plain;
	for (size_t i = 0; ok && i < n; i += 2) {
		unsigned v = 0;
		ok = strchr("0123456789abcdefABCDEF", c[i]) && strchr("0123456789abcdefABCDEF", c[i + 1]) &&
		     sscanf(c + i, "%2x", &v) == 1 && v != 0;
		plain[i / 2] = (char)v;
	}
	if (ok) {
		plain[n / 2] = 0;
		char *end;
		long long id = plain[0] == 'i' ? strtoll(plain + 1, &end, 10) : 0;
		if (id > 0 && !*end)
			return id;
	}
	http_reply_err(req, AT_EINVAL, "cursor is not one this server gave out", json_pack("{ss}", "field", "cursor"));
	return -1;
}

/* limit as text into out; 0, or -1 after replying 400. */
static int parse_limit(http_req_t *req, char out[8])
{
	const char *l = http_req_query(req, "limit");
	long long v = BROWSE_DEFAULT_LIMIT;
	if (l) {
		char *end;
		v = strtoll(l, &end, 10);
		if (!l[0] || *end || v < 1 || v > BROWSE_MAX_LIMIT) {
			http_reply_err(req, AT_ERANGE, "limit must be 1..500", json_pack("{ss}", "field", "limit"));
			return -1;
		}
	}
	snprintf(out, 8, "%lld", v);
	return 0;
}

/* A query value that must be one of words[] (NULL when absent); -1 after 400. */
static int parse_enum(http_req_t *req, const char *name, const char *const *words, const char **out)
{
	const char *v = http_req_query(req, name);
	*out = v;
	if (!v)
		return 0;
	for (size_t i = 0; words[i]; i++)
		if (!strcmp(v, words[i]))
			return 0;
	http_reply_err(req, AT_EINVAL, "value not allowed here", json_pack("{ss,ss}", "field", name, "value", v));
	return -1;
}

/* ---- sketches and paintings ---- */

static const char *const image_statuses[] = {"accepted", "rejected", "deleted", NULL};
static const char *const image_splits[] = {"train", "holdout", NULL};

static void list_images(http_req_t *req, const char *domain, const char *url_prefix)
{
	const char *status, *split;
	char lim[8], cur[24];
	long long cursor = parse_cursor(req);
	if (cursor < 0 || parse_limit(req, lim) < 0 || parse_enum(req, "status", image_statuses, &status) < 0 ||
	    parse_enum(req, "split", image_splits, &split) < 0)
		return;
	snprintf(cur, sizeof cur, "%lld", cursor);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, domain);
	db_param_text(&p, http_req_query(req, "since"));
	db_param_text(&p, http_req_query(req, "until"));
	db_param_text(&p, http_req_query(req, "source"));
	db_param_text(&p, http_req_query(req, "contributor"));
	db_param_text(&p, status);
	db_param_text(&p, split);
	db_param_text(&p, cursor ? cur : NULL);
	db_param_text(&p, lim);
	db_param_text(&p, url_prefix);
	api_reply_sql_json(
		req,
		"SELECT json_build_object('items', coalesce(json_agg(json_build_object('id', i.id, "
		"'sha256', encode(i.sha256, 'hex'), 'width', i.width, 'height', i.height, 'ink_ratio', i.ink_ratio, "
		"'split', i.split, 'status', i.status, 'contributor', i.contributor, 'consent', i.consent, "
		"'source', i.source, 'created_at', i.created_at, "
		"'image_url', $10::text || i.id || '.png') ORDER BY i.id DESC), '[]'), "
		"'next_cursor', CASE WHEN count(*) = $9::int THEN encode(convert_to('i' || min(i.id), 'UTF8'), 'hex') "
		"END)::text FROM (SELECT * FROM images WHERE domain = $1 "
		"AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz) "
		"AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz) "
		"AND ($4::text IS NULL OR source = $4) AND ($5::text IS NULL OR contributor = $5) "
		"AND ($6::text IS NULL OR status = $6) AND ($7::text IS NULL OR split = $7) "
		"AND ($8::bigint IS NULL OR id < $8::bigint) ORDER BY id DESC LIMIT $9::int) i",
		&p, "no images");
}

static void get_sketches(http_req_t *req) { list_images(req, "sketch", "/v1/sketches/"); }
static void get_paintings(http_req_t *req) { list_images(req, "painting", "/v1/paintings/"); }

/* ---- rejected uploads ---- */

static const char *const domains[] = {"sketch", "painting", NULL};
static unsigned long long rejections_dropped;
static int rejections_inflight;

static void on_rejection_stored(void *arg, int status, PGresult *res)
{
	(void)arg;
	(void)res;
	rejections_inflight--;
	if (status < 0)
		log_warn("could not record a rejected upload: %s", at_strerror(status));
}

void browse_record_rejection(http_req_t *req, int domain, int err, const char *msg, size_t size, const char *source,
			     const char *contributor)
{
	struct app *app = http_req_app(req);
	if (rejections_inflight >= BROWSE_REJECT_INFLIGHT || app->shutting_down) {
		if (rejections_dropped++ % 1000 == 0)
			log_warn("rejected uploads arrive faster than they can be recorded; %llu not recorded so far",
				 rejections_dropped);
		return;
	}
	size_t ctlen = 0;
	const char *ct = http_req_header(req, "content-type", &ctlen);
	char ctype[129], sizes[24];
	snprintf(ctype, sizeof ctype, "%.*s", (int)(ctlen < 128 ? ctlen : 128), ct ? ct : "");
	snprintf(sizes, sizeof sizes, "%zu", size);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, domains[domain ? 1 : 0]);
	db_param_text(&p, at_err_name(err));
	db_param_text(&p, msg);
	db_param_text(&p, sizes);
	db_param_text(&p, ct ? ctype : NULL);
	db_param_text(&p, source);
	db_param_text(&p, contributor);
	if (db_query(app->db, "SELECT atelier_record_rejection($1, $2, $3, $4::bigint, $5, $6, $7)", &p,
		     on_rejection_stored, NULL) < 0) {
		rejections_dropped++;
		return;
	}
	rejections_inflight++;
}

static void get_rejected(http_req_t *req)
{
	const char *domain;
	char lim[8], cur[24];
	long long cursor = parse_cursor(req);
	if (cursor < 0 || parse_limit(req, lim) < 0 || parse_enum(req, "domain", domains, &domain) < 0)
		return;
	snprintf(cur, sizeof cur, "%lld", cursor);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, domain);
	db_param_text(&p, http_req_query(req, "since"));
	db_param_text(&p, http_req_query(req, "until"));
	db_param_text(&p, http_req_query(req, "source"));
	db_param_text(&p, http_req_query(req, "reason"));
	db_param_text(&p, cursor ? cur : NULL);
	db_param_text(&p, lim);
	api_reply_sql_json(
		req,
		"SELECT json_build_object('items', coalesce(json_agg(json_build_object('id', r.id, 'domain', r.domain, "
		"'reason', r.reason, 'detail', r.detail, 'size', r.size, 'content_type', r.content_type, "
		"'source', r.source, 'contributor', r.contributor, 'created_at', r.created_at) ORDER BY r.id DESC), '[]'), "
		"'next_cursor', CASE WHEN count(*) = $7::int THEN encode(convert_to('i' || min(r.id), 'UTF8'), 'hex') "
		"END)::text FROM (SELECT * FROM rejected_uploads WHERE ($1::text IS NULL OR domain = $1) "
		"AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz) "
		"AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz) "
		"AND ($4::text IS NULL OR source = $4) AND ($5::text IS NULL OR reason = $5) "
		"AND ($6::bigint IS NULL OR id < $6::bigint) ORDER BY id DESC LIMIT $7::int) r",
		&p, "no rejections");
}

/* DELETE /v1/sketches/{id} is a withdrawal now (orchestrator/rights.c): the
 * pixels go with the status, and the audit records who. */

/* ---- the route table ---- */

#define P_PAGE                                                                                              \
	"\"since\":{\"type\":\"string\",\"format\":\"date-time\",\"description\":\"created at or after\"}," \
	"\"until\":{\"type\":\"string\",\"format\":\"date-time\",\"description\":\"created before\"},"      \
	"\"source\":" API_STR                                                                               \
	",\"cursor\":{\"type\":\"string\",\"description\":\"next_cursor of the previous page\"},"           \
	"\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":500,\"default\":100}"
#define P_IMAGES                                                                                                       \
	"{" P_PAGE ",\"contributor\":" API_STR ",\"status\":{\"type\":\"string\",\"enum\":[\"accepted\",\"rejected\"," \
	"\"deleted\"]},\"split\":{\"type\":\"string\",\"enum\":[\"train\",\"holdout\"]}}"
#define S_NEXT ",\"next_cursor\":{\"type\":\"string\",\"nullable\":true,\"description\":\"null on the last page\"}"
#define S_IMAGES                                                                                                              \
	HTTP_JSON(API_OBJECT("\"items\":" API_ARRAY(API_OBJECT(                                                               \
		"\"id\":" API_INT ",\"sha256\":" API_SHA256 ",\"width\":" API_INT ",\"height\":" API_INT                      \
		",\"ink_ratio\":" API_NUM ",\"split\":" API_STR ",\"status\":" API_STR                                        \
		",\"contributor\":" API_NULL("string") ",\"consent\":" API_NULL("boolean") ",\"source\":" API_NULL(           \
			"string") ",\"created_at\":" API_TIME                                                                 \
				  ",\"image_url\":{\"type\":\"string\",\"description\":\"the normalised PNG (cacheable)\"}")) \
				     S_NEXT))

const struct http_route browse_routes[] = {
	{"GET", "/v1/sketches", get_sketches, ROLE_ANY,
	 "sketches, newest first (filters: since, until, source, contributor, status, split; cursor, limit)",
	 .op = "listSketches", .tag = "ingest", .params = P_IMAGES, .reply = S_IMAGES},
	{"GET", "/v1/paintings", get_paintings, ROLE_ANY, "paintings, newest first (the same filters as sketches)",
	 .op = "listPaintings", .tag = "ingest", .params = P_IMAGES, .reply = S_IMAGES},
	{"GET", "/v1/uploads/rejected", get_rejected, ROLE_ANY,
	 "uploads refused and why, newest first (filters: since, until, source, domain, reason; cursor, limit)",
	 .op = "listRejectedUploads", .tag = "ingest",
	 .params = "{" P_PAGE ",\"domain\":{\"type\":\"string\",\"enum\":[\"sketch\",\"painting\"]},\"reason\":{"
		   "\"type\":\"string\",\"description\":\"an error code, e.g. UNSUPPORTED, CORRUPT, UNPROCESSABLE\"}}",
	 .reply = HTTP_JSON(API_OBJECT("\"items\":" API_ARRAY(
		 API_OBJECT("\"id\":" API_INT ",\"domain\":" API_STR ",\"reason\":" API_STR ",\"detail\":" API_NULL(
			 "string") ",\"size\":" API_INT
				   ",\"content_type\":" API_NULL("string") ",\"source\":" API_NULL(
					   "string") ",\"contributor\":" API_NULL("string") ",\"created_at\":" API_TIME))
					       S_NEXT))},
};
const size_t browse_nroutes = sizeof browse_routes / sizeof browse_routes[0];
