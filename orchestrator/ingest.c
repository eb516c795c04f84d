/*
 * ingest.c — POST /v1/sketches and /v1/paintings: decode, normalise, validate,
 * deduplicate, store; and the read side (metadata, normalised PNG).
 *
 * Flow of one upload: the handler checks the media type and picks the image
 * out of the body (raw or multipart) → the body is copied and normalised on
 * the uv threadpool (lib/image.c; the loop never decodes) → one INSERT ... ON
 * CONFLICT DO NOTHING commits the row (a trigger NOTIFYs the scheduler) → 201,
 * or 200 with the existing id for a duplicate. Any failure before the INSERT
 * commits leaves no row; a 201/200 is sent only after the commit.
 *
 * The copy exists because h2o frees the request body if the client goes away
 * while a threadpool job still reads it.
 */
#include "ingest.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "browse.h"
#include "config.h"
#include "image.h"
#include "log.h"
#include "multipart.h"
#include "receipt.h"
#include "utf8.h"

static const char *const domain_names[] = {"sketch", "painting"};

struct upload {
	uv_work_t work;
	struct app *app;
	http_req_t *req;
	int domain;
	uint8_t *data;
	size_t len;
	char *contributor;
	int consent; /* -1 = not given */
	int has_receipt;
	uint8_t receipt_sha256[32]; /* the contributor's receipt, hashed by the node (lib/receipt.h) */
	char *source;
	struct image_opts opts;
	struct image_norm norm;
	int rc;
	char why[256];
	uint64_t t0;
	struct upload *next; /* in the group-commit queue */
};

static void upload_free(struct upload *u)
{
	if (!u)
		return;
	free(u->data);
	free(u->contributor);
	free(u->source);
	image_norm_free(&u->norm);
	free(u);
}

static json_t *row_json(const struct upload *u, const char *id, const char *split, double ink)
{
	return json_pack("{sI,ss,ss,sf,ss,si,si}", "id", (json_int_t)strtoll(id, NULL, 10), "domain",
			 domain_names[u->domain], "sha256", u->norm.sha256_hex, "ink_ratio", ink, "split", split,
			 "width", u->norm.width, "height", u->norm.height);
}

/* ---- step 3: the row ---- */

static void on_existing(void *arg, int status, PGresult *res)
{
	struct upload *u = arg;
	if (status < 0 || PQntuples(res) != 1) {
		u->app->ingest.db_errors++;
		http_reply_err(u->req, AT_EDB, "could not store the image: database unavailable", NULL);
	} else {
		u->app->ingest.duplicate[u->domain]++;
		json_t *o =
			row_json(u, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), strtod(PQgetvalue(res, 0, 2), NULL));
		json_object_set_new(o, "duplicate", json_true());
		http_reply_json(u->req, 200, o);
	}
	upload_free(u);
}

/*
 * Group commit: uploads that are ready while earlier INSERTs are in flight
 * wait here and go out together as one multi-row INSERT, so under load one
 * commit (one WAL flush) covers many rows. At low load a batch is one row and
 * nothing waits. Every upload in a batch is answered only after its commit.
 */
#define INGEST_BATCH_MAX 64
#define INGEST_COLS 13

struct batch {
	struct app *app;
	struct upload *u[INGEST_BATCH_MAX];
	int n;
};

static void batch_flush(struct app *app);
static void batch_send(struct app *app, struct batch *b);

/* Class 22 (data exception: bad text, out-of-range value) or 23 (integrity
 * constraint): the rows were refused, not the database lost. */
static int sqlstate_is_data(const PGresult *res)
{
	const char *st = res ? db_sqlstate(res) : "";
	return strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0;
}

/* A group refused for its data is sent again one row per INSERT, so only the
 * row at fault fails. Takes b. */
static void batch_split(struct app *app, struct batch *b)
{
	for (int i = 0; i < b->n; i++) {
		struct batch *one = calloc(1, sizeof *one);
		if (!one) {
			app->ingest.db_errors++;
			http_reply_err(b->u[i]->req, AT_ENOMEM, "out of memory", NULL);
			upload_free(b->u[i]);
			continue;
		}
		one->app = app;
		one->u[0] = b->u[i];
		one->n = 1;
		batch_send(app, one);
	}
	free(b);
}

static void lookup_existing(struct upload *u)
{
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, domain_names[u->domain]);
	db_param_bin(&p, u->norm.sha256, 32);
	int rc = db_query(u->app->db, "SELECT id, split, ink_ratio FROM images WHERE domain = $1 AND sha256 = $2", &p,
			  on_existing, u);
	if (rc < 0) {
		u->app->ingest.db_errors++;
		http_reply_err(u->req, AT_EDB, "database unavailable", NULL);
		upload_free(u);
	}
}

static void on_batch(void *arg, int status, PGresult *res)
{
	struct batch *b = arg;
	struct app *app = b->app;
	app->ingest_q.inflight--;
	int data = status == AT_EDB && sqlstate_is_data(res);
	if (status < 0 && data && b->n > 1) {
		log_info("ingest: insert of %d refused (SQLSTATE %s): retrying its rows one by one", b->n,
			 db_sqlstate(res));
		batch_split(app, b);
		batch_flush(app);
		return;
	}
	if (status < 0) {
		log_warn("ingest: insert of %d failed: %s", b->n, res ? PQresultErrorMessage(res) : "connection lost");
		for (int i = 0; i < b->n; i++) {
			/* PostgreSQL's text stays in the log: it may quote the row */
			if (data) {
				app->ingest.rejected_other++;
				http_reply_err(b->u[i]->req, AT_EUNPROCESSABLE,
					       "the database refused this upload's fields",
					       json_pack("{ss}", "sqlstate", db_sqlstate(res)));
			} else {
				app->ingest.db_errors++;
				http_reply_err(b->u[i]->req, AT_EDB, "could not store the image: database unavailable",
					       NULL);
			}
			upload_free(b->u[i]);
		}
	} else {
		int rows = PQntuples(res);
		char used[INGEST_BATCH_MAX] = {0};
		for (int i = 0; i < b->n; i++) {
			struct upload *u = b->u[i];
			const char *id = NULL;
			for (int r = 0; r < rows && r < INGEST_BATCH_MAX && !id; r++) {
				/* sha256 comes back as hex text ("\\x" + 64 digits). A second
				 * upload of the same pixels in this batch finds its row used. */
				const char *sha = PQgetvalue(res, r, 1);
				if (!used[r] && strlen(sha) == 66 && strcmp(sha + 2, u->norm.sha256_hex) == 0 &&
				    strcmp(PQgetvalue(res, r, 2), domain_names[u->domain]) == 0) {
					id = PQgetvalue(res, r, 0);
					used[r] = 1;
				}
			}
			if (!id) {
				lookup_existing(u);
				continue;
			}
			app->ingest.accepted[u->domain]++;
			json_t *o = row_json(u, id, image_split(u->norm.sha256, app->cfg.holdout_fraction),
					     u->norm.ink_ratio);
			json_object_set_new(o, "duplicate", json_false());
			http_reply_json(u->req, 201, o);
			upload_free(u);
		}
	}
	free(b);
	batch_flush(app);
}

static void batch_send(struct app *app, struct batch *b)
{
	const char *vals[INGEST_BATCH_MAX * INGEST_COLS];
	int lens[INGEST_BATCH_MAX * INGEST_COLS], fmts[INGEST_BATCH_MAX * INGEST_COLS];
	char nums[INGEST_BATCH_MAX][5][32];
	struct at_buf sql;
	at_buf_init(&sql, 0);
	int rc = at_buf_addstr(&sql, "INSERT INTO images (domain, sha256, width, height, channels, png, ink_ratio, "
				     "split, contributor, consent, source, phash, receipt_sha256) VALUES ");
	int k = 0;
	for (int i = 0; i < b->n && rc == 0; i++) {
		struct upload *u = b->u[i];
		snprintf(nums[i][0], 32, "%d", u->norm.width);
		snprintf(nums[i][1], 32, "%d", u->norm.height);
		snprintf(nums[i][2], 32, "%d", u->norm.channels);
		snprintf(nums[i][3], 32, "%.6f", u->norm.ink_ratio);
		snprintf(nums[i][4], 32, "%lld", (long long)u->norm.phash);
		const char *row[INGEST_COLS] = {domain_names[u->domain],
						(const char *)u->norm.sha256,
						nums[i][0],
						nums[i][1],
						nums[i][2],
						(const char *)u->norm.png,
						nums[i][3],
						image_split(u->norm.sha256, app->cfg.holdout_fraction),
						u->contributor,
						u->consent < 0 ? NULL
						: u->consent   ? "true"
							       : "false",
						u->source ? u->source : "api",
						u->domain == 0 && u->norm.phash ? nums[i][4] : NULL,
						u->has_receipt ? (const char *)u->receipt_sha256 : NULL};
		rc = at_buf_printf(&sql, "%s(", i ? "," : "");
		for (int c = 0; c < INGEST_COLS && rc == 0; c++) {
			vals[k] = row[c];
			fmts[k] = c == 1 || c == 5 || c == 12;
			lens[k] = c == 1 || c == 12 ? 32 : c == 5 ? (int)u->norm.png_len : 0;
			k++;
			rc = at_buf_printf(&sql, "%s$%d", c ? "," : "", k);
		}
		if (rc == 0)
			rc = at_buf_addstr(&sql, ")");
	}
	if (rc == 0)
		rc = at_buf_addstr(&sql, " ON CONFLICT (domain, sha256) DO NOTHING RETURNING id, sha256, domain");
	if (rc == 0)
		rc = db_query_argv(app->db, sql.data, k, vals, lens, fmts, on_batch, b);
	at_buf_free(&sql);
	if (rc < 0) {
		for (int i = 0; i < b->n; i++) {
			app->ingest.db_errors++;
			http_reply_err(b->u[i]->req, AT_EDB, "could not store the image: database unavailable", NULL);
			upload_free(b->u[i]);
		}
		free(b);
		return;
	}
	app->ingest_q.inflight++;
}

static void batch_flush(struct app *app)
{
	struct ingest_queue *q = &app->ingest_q;
	while (q->head && q->inflight < app->cfg.db_conns) {
		struct batch *b = calloc(1, sizeof *b);
		if (!b)
			return;
		b->app = app;
		while (q->head && b->n < INGEST_BATCH_MAX) {
			struct upload *u = q->head;
			q->head = u->next;
			if (!q->head)
				q->tail = NULL;
			q->queued--;
			if (!http_req_alive(u->req)) {
				http_reply_empty(u->req, HTTP_STATUS_CLIENT_GONE);
				upload_free(u);
				continue;
			}
			b->u[b->n++] = u;
		}
		if (b->n == 0) {
			free(b);
			return;
		}
		batch_send(app, b);
	}
}

static void store(struct upload *u)
{
	struct ingest_queue *q = &u->app->ingest_q;
	u->next = NULL;
	if (q->tail)
		q->tail->next = u;
	else
		q->head = u;
	q->tail = u;
	q->queued++;
	batch_flush(u->app);
}

/* ---- step 3: near-duplicates (after the cap, before the INSERT) ----
 *
 * A sketch whose dHash (lib/image.c image_dhash64, over the normalised
 * pixels: sketchnorm already crops to the ink and scales, so a shifted or
 * rescaled copy hashes close) is within --near-duplicate-distance bits of a
 * stored accepted sketch is answered like an exact duplicate (200, the stored
 * sketch's id) with near_duplicate: true, and not stored. The four indexed
 * 16-bit bands (sql/012_abuse.sql) bound the cost: at distance <= 3 a match
 * shares a band exactly, so only rows sharing one are compared. An exact
 * copy (same sha256) is left to the INSERT's ON CONFLICT. */

static void on_near_duplicate(void *arg, int status, PGresult *res)
{
	struct upload *u = arg;
	struct app *app = u->app;
	if (status < 0) {
		app->ingest.db_errors++;
		http_reply_err(u->req, AT_EDB, "could not store the image: database unavailable", NULL);
		upload_free(u);
		return;
	}
	if (PQntuples(res) == 0) {
		store(u);
		return;
	}
	app->ingest.near_duplicate++;
	json_t *o =
		json_pack("{sI,ss,ss,sf,ss,si,si,sb,sb,sI}", "id", (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10),
			  "domain", domain_names[u->domain], "sha256", PQgetvalue(res, 0, 1), "ink_ratio",
			  strtod(PQgetvalue(res, 0, 2), NULL), "split", PQgetvalue(res, 0, 3), "width", u->norm.width,
			  "height", u->norm.height, "duplicate", 1, "near_duplicate", 1, "distance",
			  (json_int_t)strtoll(PQgetvalue(res, 0, 4), NULL, 10));
	http_reply_json(u->req, 200, o);
	upload_free(u);
}

static void check_near_duplicate(struct upload *u)
{
	int d = u->app->cfg.near_duplicate_distance;
	if (u->domain != 0 || d < 0 || u->norm.phash == 0) {
		store(u);
		return;
	}
	uint64_t h = u->norm.phash;
	char hs[32], b[4][16], ds[16];
	snprintf(hs, sizeof hs, "%lld", (long long)h);
	for (int i = 0; i < 4; i++)
		snprintf(b[i], sizeof b[i], "%u", (unsigned)((h >> (48 - 16 * i)) & 0xffff));
	snprintf(ds, sizeof ds, "%d", d);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, hs);
	db_param_bin(&p, u->norm.sha256, 32);
	for (int i = 0; i < 4; i++)
		db_param_text(&p, b[i]);
	db_param_text(&p, ds);
	int rc = db_query(
		u->app->db,
		"SELECT id, encode(sha256, 'hex'), ink_ratio, split, bit_count(int8send(phash # $1::bigint)) AS d "
		"FROM images WHERE domain = 'sketch' AND phash IS NOT NULL AND status = 'accepted' "
		"AND sha256 <> $2 AND (((phash >> 48) & 65535) = $3::bigint OR ((phash >> 32) & 65535) = $4::bigint "
		"OR ((phash >> 16) & 65535) = $5::bigint OR (phash & 65535) = $6::bigint) "
		"AND bit_count(int8send(phash # $1::bigint)) <= $7::int ORDER BY d, id LIMIT 1",
		&p, on_near_duplicate, u);
	if (rc < 0) {
		u->app->ingest.db_errors++;
		http_reply_err(u->req, AT_EDB, "could not store the image: database unavailable", NULL);
		upload_free(u);
	}
}

/* ---- step 3: a contributor's daily cap (poisoning by flooding) ----
 *
 * One indexed count (sql/012_contributor_day.sql) per sketch that names a
 * contributor, before the INSERT. Uploads of one contributor in flight at
 * once may each pass the count: the cap can be overshot by the concurrency,
 * never by a sustained flood. */

static void on_contributor_count(void *arg, int status, PGresult *res)
{
	struct upload *u = arg;
	struct app *app = u->app;
	if (status < 0 || PQntuples(res) != 1) {
		app->ingest.db_errors++;
		http_reply_err(u->req, AT_EDB, "could not store the image: database unavailable", NULL);
		upload_free(u);
		return;
	}
	long long n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	int cap = app->cfg.max_sketches_per_contributor_day;
	if (n >= cap) {
		app->ingest.rejected_cap++;
		http_req_add_header(u->req, "Retry-After", "3600");
		char msg[160];
		snprintf(msg, sizeof msg,
			 "contributor has reached the cap of %d accepted sketches in 24 hours; try again later", cap);
		http_reply_err(u->req, AT_ERATELIMITED, msg,
			       json_pack("{ss,si,sI}", "field", "contributor", "cap", cap, "accepted_24h",
					 (json_int_t)n));
		upload_free(u);
		return;
	}
	check_near_duplicate(u);
}

static void check_contributor_cap(struct upload *u)
{
	if (u->domain != 0 || !u->contributor || !u->contributor[0] ||
	    u->app->cfg.max_sketches_per_contributor_day <= 0) {
		check_near_duplicate(u);
		return;
	}
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, u->contributor);
	int rc = db_query(u->app->db,
			  "SELECT count(*) FROM images WHERE domain = 'sketch' AND contributor = $1 "
			  "AND created_at > now() - interval '24 hours' AND status <> 'rejected'",
			  &p, on_contributor_count, u);
	if (rc < 0) {
		u->app->ingest.db_errors++;
		http_reply_err(u->req, AT_EDB, "could not store the image: database unavailable", NULL);
		upload_free(u);
	}
}

/* ---- step 2: normalise off the loop ---- */

static void normalize_work(uv_work_t *w)
{
	struct upload *u = w->data;
	u->rc = image_normalize(u->data, u->len, &u->opts, &u->norm, u->why, sizeof u->why);
}

static void normalize_done(uv_work_t *w, int status)
{
	struct upload *u = w->data;
	struct ingest_stats *st = &u->app->ingest;
	st->normalize_seconds += (double)(uv_hrtime() - u->t0) / 1e9;
	free(u->data); /* the pixels live on in u->norm */
	u->data = NULL;
	if (status < 0) {
		http_reply_err(u->req, AT_EUNAVAILABLE, "server shutting down", NULL);
		upload_free(u);
		return;
	}
	if (!http_req_alive(u->req)) {
		/* The client left: store nothing it cannot learn about. */
		http_reply_empty(u->req, HTTP_STATUS_CLIENT_GONE);
		upload_free(u);
		return;
	}
	if (u->rc < 0) {
		json_t *d = json_pack("{ss,ss}", "field", "image", "reason", u->why);
		const char *msg = "image rejected";
		switch (u->rc) {
		case AT_EUNSUPPORTED:
			st->rejected_unsupported++;
			msg = "not a PNG or JPEG image";
			break;
		case AT_ECORRUPT:
			st->rejected_corrupt++;
			msg = "corrupt or truncated image";
			break;
		case AT_EUNPROCESSABLE:
			if (strstr(u->why, "pixels")) {
				st->rejected_pixels++;
				msg = "image too large: its pixels or a side are over the cap";
			} else {
				st->rejected_ink++;
				msg = u->domain == 0 ? "sketch rejected: ink ratio out of range" : "image rejected";
				if (u->norm.ink_ratio >= 0)
					json_object_set_new(d, "ink_ratio", json_real(u->norm.ink_ratio));
				json_object_set_new(d, "min_ink", json_real(u->opts.min_ink));
				json_object_set_new(d, "max_ink", json_real(u->opts.max_ink));
			}
			break;
		default: st->rejected_other++; break;
		}
		browse_record_rejection(u->req, u->domain, u->rc, msg, u->len, u->source, u->contributor);
		http_reply_err(u->req, u->rc, msg, d);
		upload_free(u);
		return;
	}
	check_contributor_cap(u);
}

/* ---- step 1: the request ---- */

static int media_is(const char *ct, size_t n, const char *want)
{
	size_t wl = strlen(want);
	return n >= wl && strncasecmp(ct, want, wl) == 0 && (n == wl || ct[wl] == ';' || ct[wl] == ' ');
}

/* A text field's value, checked and cut to INGEST_FIELD_MAX bytes on a
 * character boundary: PostgreSQL refuses invalid UTF-8 (and NUL), and one
 * such value in a group commit would fail every row of the group. On bad
 * text replies 422 naming the field and returns AT_EUNPROCESSABLE. */
#define INGEST_FIELD_MAX 256
static int field_dup(http_req_t *req, const struct multipart_part *p, const char *name, char **out)
{
	size_t bad = 0;
	if (utf8_check(p->data, p->len, &bad) < 0) {
		http_reply_err(req, AT_EUNPROCESSABLE, "form field is not valid UTF-8 text",
			       json_pack("{ss,ss,sI}", "field", name, "reason", "invalid UTF-8 or NUL byte", "offset",
					 (json_int_t)bad));
		return AT_EUNPROCESSABLE;
	}
	*out = strndup((const char *)p->data, utf8_cut(p->data, p->len, INGEST_FIELD_MAX));
	if (!*out) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return AT_ENOMEM;
	}
	return 0;
}

/* images.source says where an image came from, and "node:NAME" is what
 * evaluate scores as a contribution (lib/slice.h), so only atelierd writes it:
 * from a node token, "node:" and the node it is bound to ("node:#ID", the
 * token's id, while it is not bound yet: sql/009_node_trust.sql), whatever
 * the client sent; from an operator (imports, synth) the source as sent, but
 * never "node..." . Replies itself and returns < 0 on refusal. */
static int source_from_token(http_req_t *req, char **source)
{
	if (http_req_role(req) & ROLE_NODE) {
		char buf[80];
		const char *node = http_req_token_node(req);
		if (*node)
			snprintf(buf, sizeof buf, "node:%s", node);
		else
			snprintf(buf, sizeof buf, "node:#%lld", (long long)http_req_token_id(req));
		char *d = strdup(buf);
		if (!d) {
			http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
			return AT_ENOMEM;
		}
		free(*source);
		*source = d;
		return 0;
	}
	if (*source && strncasecmp(*source, "node", 4) == 0 && ((*source)[4] == ':' || (*source)[4] == 0)) {
		http_reply_err(req, AT_EUNPROCESSABLE,
			       "source \"node:...\" is set from a node token; an upload may not claim it",
			       json_pack("{ss}", "field", "source"));
		return AT_EUNPROCESSABLE;
	}
	return 0;
}

static void upload(http_req_t *req, int domain)
{
	struct app *app = http_req_app(req);
	struct ingest_stats *st = &app->ingest;
	size_t ctlen = 0, len;
	const char *ct = http_req_header(req, "content-type", &ctlen);
	const uint8_t *body = http_req_body(req, &len);
	const uint8_t *img = NULL;
	size_t imglen = 0;
	char *contributor = NULL, *source = NULL;
	int consent = -1, has_receipt = 0;
	uint8_t receipt_sha[32];

	if (!ct) {
		st->rejected_unsupported++;
		http_reply_err(req, AT_EUNSUPPORTED,
			       "missing Content-Type: send image/png, image/jpeg or multipart/form-data", NULL);
		return;
	}
	if (media_is(ct, ctlen, "image/png") || media_is(ct, ctlen, "image/jpeg")) {
		img = body;
		imglen = len;
	} else if (media_is(ct, ctlen, "multipart/form-data")) {
		struct multipart_part parts[8];
		size_t n = 0;
		char why[128] = "";
		int rc = multipart_parse(ct, ctlen, body, len, parts, 8, &n, why, sizeof why);
		if (rc < 0) {
			st->rejected_other++;
			/* AT_ETOOBIG (too many parts, part headers too long) is 413
			 * here as on the serving node; the rest is AT_EPARSE: 400 */
			http_reply_err(req, rc, "malformed multipart body", json_pack("{ss}", "reason", why));
			return;
		}
		const struct multipart_part *ip = multipart_get(parts, n, "image");
		if (!ip) {
			st->rejected_other++;
			http_reply_err(req, AT_EINVAL, "multipart body has no \"image\" field", NULL);
			return;
		}
		img = ip->data;
		imglen = ip->len;
		const struct multipart_part *f;
		if ((f = multipart_get(parts, n, "contributor")) != NULL &&
		    field_dup(req, f, "contributor", &contributor) < 0) {
			st->rejected_other++;
			return;
		}
		if ((f = multipart_get(parts, n, "source")) != NULL && field_dup(req, f, "source", &source) < 0) {
			st->rejected_other++;
			free(contributor);
			return;
		}
		/* the node's /api/contribute reads consent with the same function:
		 * an answer neither yes nor no is refused, not stored as "no" */
		if ((f = multipart_get(parts, n, "consent")) != NULL &&
		    config_parse_bool((const char *)f->data, f->len, &consent) < 0) {
			st->rejected_other++;
			free(contributor);
			free(source);
			http_reply_err(req, AT_EUNPROCESSABLE,
				       "consent must be yes or no (yes/y/true/1/on, no/n/false/0/off)",
				       json_pack("{ss}", "field", "consent"));
			return;
		}
		/* a serving node's contribution: the sha256 of the receipt it gave
		 * the contributor (the receipt itself never leaves the node) */
		if ((f = multipart_get(parts, n, "receipt_sha256")) != NULL) {
			if (domain != 0 || receipt_parse_hex((const char *)f->data, f->len, receipt_sha) < 0) {
				st->rejected_other++;
				free(contributor);
				free(source);
				http_reply_err(req, AT_EUNPROCESSABLE,
					       "receipt_sha256 is 64 lowercase hex digits, on sketches only",
					       json_pack("{ss}", "field", "receipt_sha256"));
				return;
			}
			has_receipt = 1;
		}
	} else {
		st->rejected_unsupported++;
		browse_record_rejection(req, domain, AT_EUNSUPPORTED, "unsupported Content-Type", len, NULL, NULL);
		http_reply_err(req, AT_EUNSUPPORTED, "unsupported Content-Type",
			       json_pack("{ss#,s[sss]}", "content_type", ct, (int)ctlen, "accepted", "image/png",
					 "image/jpeg", "multipart/form-data"));
		return;
	}
	if (source_from_token(req, &source) < 0) {
		st->rejected_other++;
		free(contributor);
		free(source);
		return;
	}
	if (image_sniff(img, imglen) < 0) {
		st->rejected_unsupported++;
		browse_record_rejection(req, domain, AT_EUNSUPPORTED, "not a PNG or JPEG image", imglen, source,
					contributor);
		free(contributor);
		free(source);
		http_reply_err(req, AT_EUNSUPPORTED, "not a PNG or JPEG image",
			       json_pack("{ss,sI}", "field", "image", "size", (json_int_t)imglen));
		return;
	}
	struct upload *u = calloc(1, sizeof *u);
	if (u)
		u->data = malloc(imglen);
	if (!u || !u->data) {
		free(u);
		free(contributor);
		free(source);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	memcpy(u->data, img, imglen);
	u->len = imglen;
	u->app = app;
	u->req = req;
	u->domain = domain;
	u->contributor = contributor;
	u->source = source;
	u->consent = consent;
	u->has_receipt = has_receipt;
	if (has_receipt)
		memcpy(u->receipt_sha256, receipt_sha, 32);
	u->norm.ink_ratio = -1;
	image_opts_init(&u->opts, domain == 0 ? IMAGE_SKETCH : IMAGE_PAINTING);
	u->opts.size = app->cfg.image_size;
	u->opts.max_pixels = app->cfg.max_pixels;
	if (domain == 0) {
		u->opts.min_ink = app->cfg.min_ink;
		u->opts.max_ink = app->cfg.max_ink;
		/* a photo sent as a sketch is kept whole: prepare draws its
		 * sketch (lib/sketchify) and normalises that */
		if (source && strncmp(source, "photo", 5) == 0)
			u->opts.sketchnorm = 0;
	}
	u->work.data = u;
	u->t0 = uv_hrtime();
	int rc = uv_queue_work(app->loop, &u->work, normalize_work, normalize_done);
	if (rc < 0) {
		upload_free(u);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule image decoding", NULL);
	}
}

void ingest_post_sketch(http_req_t *req) { upload(req, 0); }
void ingest_post_painting(http_req_t *req) { upload(req, 1); }

/* ---- read side ---- */

struct fetch {
	http_req_t *req;
	int png;
};

static void on_fetched(void *arg, int status, PGresult *res)
{
	struct fetch *f = arg;
	if (status < 0) {
		http_reply_err(f->req, AT_EDB, "database unavailable", NULL);
	} else if (PQntuples(res) != 1) {
		http_reply_err(f->req, AT_ENOTFOUND, "no such image", json_pack("{ss}", "path", http_req_path(f->req)));
	} else if (f->png) {
		http_req_add_header(f->req, "Cache-Control", "public, max-age=31536000, immutable");
		http_reply_bytes(f->req, 200, "image/png", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	} else {
		json_error_t e;
		json_t *o = json_loads(PQgetvalue(res, 0, 0), 0, &e);
		if (o)
			http_reply_json(f->req, 200, o);
		else
			http_reply_err(f->req, AT_EINTERNAL, "bad row", NULL);
	}
	free(f);
}

static void fetch(http_req_t *req, int domain, int png)
{
	struct app *app = http_req_app(req);
	const char *id = http_req_param(req, "id");
	int64_t v;
	if (http_req_param_id(req, "id", &v) < 0)
		return;
	struct fetch *f = malloc(sizeof *f);
	if (!f) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	f->req = req;
	f->png = png;
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, id);
	db_param_text(&p, domain_names[domain]);
	/* The PNG comes back in binary format only for column 0 of that query; the
	 * metadata query builds its JSON in SQL so NULLs and types come out right. */
	const char *sql = png ? "SELECT png FROM images WHERE id = $1 AND domain = $2 AND status <> 'deleted'"
			      : "SELECT json_build_object('id', id, 'domain', domain, 'sha256', encode(sha256, 'hex'), "
				"'width', width, 'height', height, 'channels', channels, 'ink_ratio', ink_ratio, "
				"'split', split, 'status', status, 'contributor', contributor, 'consent', consent, "
				"'source', source, 'created_at', created_at, 'bytes', length(png))::text "
				"FROM images WHERE id = $1 AND domain = $2";
	int rc = png ? db_query_binary(app->db, sql, &p, on_fetched, f) : db_query(app->db, sql, &p, on_fetched, f);
	if (rc < 0) {
		free(f);
		http_reply_err(req, AT_EDB, "database unavailable", NULL);
	}
}

void ingest_get_sketch(http_req_t *req) { fetch(req, 0, 0); }
void ingest_get_sketch_png(http_req_t *req) { fetch(req, 0, 1); }
void ingest_get_painting(http_req_t *req) { fetch(req, 1, 0); }
void ingest_get_painting_png(http_req_t *req) { fetch(req, 1, 1); }

int ingest_metrics(const struct app *app, struct at_buf *b)
{
	const struct ingest_stats *s = &app->ingest;
	return at_buf_printf(
		b,
		"# HELP atelier_ingest_accepted_total Images stored, by domain.\n"
		"# TYPE atelier_ingest_accepted_total counter\n"
		"atelier_ingest_accepted_total{domain=\"sketch\"} %llu\n"
		"atelier_ingest_accepted_total{domain=\"painting\"} %llu\n"
		"# HELP atelier_ingest_duplicate_total Uploads whose pixels were already stored.\n"
		"# TYPE atelier_ingest_duplicate_total counter\n"
		"atelier_ingest_duplicate_total{domain=\"sketch\"} %llu\n"
		"atelier_ingest_duplicate_total{domain=\"painting\"} %llu\n"
		"# HELP atelier_ingest_rejected_total Uploads refused, by reason.\n"
		"# TYPE atelier_ingest_rejected_total counter\n"
		"atelier_ingest_rejected_total{reason=\"unsupported\"} %llu\n"
		"atelier_ingest_rejected_total{reason=\"corrupt\"} %llu\n"
		"atelier_ingest_rejected_total{reason=\"too_many_pixels\"} %llu\n"
		"atelier_ingest_rejected_total{reason=\"ink_ratio\"} %llu\n"
		"atelier_ingest_rejected_total{reason=\"other\"} %llu\n"
		"atelier_ingest_rejected_total{reason=\"database\"} %llu\n"
		"atelier_ingest_rejected_total{reason=\"contributor_cap\"} %llu\n"
		"# HELP atelier_ingest_near_duplicate_total Sketches answered as a near-duplicate of a stored one.\n"
		"# TYPE atelier_ingest_near_duplicate_total counter\n"
		"atelier_ingest_near_duplicate_total %llu\n"
		"# HELP atelier_ingest_normalize_seconds_total Time from upload to normalised image.\n"
		"# TYPE atelier_ingest_normalize_seconds_total counter\n"
		"atelier_ingest_normalize_seconds_total %.6f\n",
		(unsigned long long)s->accepted[0], (unsigned long long)s->accepted[1],
		(unsigned long long)s->duplicate[0], (unsigned long long)s->duplicate[1],
		(unsigned long long)s->rejected_unsupported, (unsigned long long)s->rejected_corrupt,
		(unsigned long long)s->rejected_pixels, (unsigned long long)s->rejected_ink,
		(unsigned long long)s->rejected_other, (unsigned long long)s->db_errors,
		(unsigned long long)s->rejected_cap, (unsigned long long)s->near_duplicate, s->normalize_seconds);
}
