/*
 * publish.c — works published from the drawing page (see publish.h).
 *
 * A work's spool file is spool.c's format: the metadata line (kind "work",
 * both content types, the sketch's length, style, title, name, model
 * version, the receipt's sha256) and then the sketch's bytes followed by the
 * painting's. The receipt itself is in the 202 and nowhere else.
 */
#include "publish.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "form.h"
#include "fsutil.h"
#include "image.h"
#include "limit.h"
#include "log.h"
#include "model_slot.h"
#include "multipart.h"
#include "serve.h"
#include "spool.h"
#include "uplink.h"
#include "works.h"
#include "puller.h"
#include "receipt.h"

#define CALL_TIMEOUT 15L
#define SPOOL_WAIT_S 20 /* a withdrawal waits out a send in progress: it ends within CALL_TIMEOUT */

struct publish {
	struct spool *spool;
	pthread_mutex_t mu;
	uint64_t accepted, refused, delivered, rejected, withdrawn_spooled;
};

int publish_open(const char *dir, int max_files, size_t max_bytes, struct publish **out)
{
	struct publish *p = calloc(1, sizeof *p);
	if (!p)
		return AT_ENOMEM;
	int rc = spool_open(dir, max_files, max_bytes, &p->spool);
	if (rc < 0) {
		free(p);
		return rc;
	}
	pthread_mutex_init(&p->mu, NULL);
	*out = p;
	return 0;
}

void publish_free(struct publish *p)
{
	if (!p)
		return;
	spool_free(p->spool);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static void count(struct publish *p, uint64_t *c)
{
	pthread_mutex_lock(&p->mu);
	(*c)++;
	pthread_mutex_unlock(&p->mu);
}

int publish_waiting(struct publish *p) { return p ? spool_ready(p->spool) : 0; }

/* ---- POST /api/publish ---- */

struct submission {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	char *meta;
	uint8_t *img; /* sketch then painting */
	size_t sketch_len, img_len, reserved;
	char receipt[RECEIPT_LEN + 1];
	char key[33]; /* the spool file's key: the receipt hash's first 32 hex digits */
	int check_rc, rc;
	const char *which; /* the image check_rc is about */
	char why[160];
};

static void submission_free(struct submission *s)
{
	if (!s)
		return;
	free(s->meta);
	free(s->img);
	free(s);
}

/* The checks atelierd's POST /v1/works runs (orchestrator/works_api.c), so a
 * work it would refuse is refused now, not dropped from the spool later. */
static void submission_work(uv_work_t *w)
{
	struct submission *s = w->data;
	struct image_opts o;
	image_opts_init(&o, IMAGE_SKETCH);
	o.min_ink = WORKS_MIN_INK;
	o.max_ink = 1;
	o.max_pixels = WORKS_IMAGE_PIXELS;
	struct image_norm n = {.ink_ratio = -1};
	s->which = "sketch";
	s->check_rc = image_normalize(s->img, s->sketch_len, &o, &n, s->why, sizeof s->why);
	image_norm_free(&n);
	if (s->check_rc < 0)
		return;
	struct image_raw r = {0};
	s->which = "painting";
	s->check_rc = image_decode(s->img + s->sketch_len, s->img_len - s->sketch_len, 3, WORKS_IMAGE_PIXELS, &r,
				   s->why, sizeof s->why);
	image_raw_free(&r);
	if (s->check_rc < 0)
		return;
	/* named by the receipt's hash, so /api/works/mine finds it while it waits */
	s->rc = spool_write_keyed(s->app->publish->spool, s->key, s->meta, s->img, s->img_len);
}

static void submission_done(uv_work_t *w, int status)
{
	struct submission *s = w->data;
	struct publish *p = s->app->publish;
	if (status < 0 || s->check_rc < 0 || s->rc < 0) {
		spool_unreserve(p->spool, s->reserved);
		count(p, &p->refused);
		if (status < 0)
			http_reply_err(s->req, AT_EUNAVAILABLE, "server shutting down", NULL);
		else if (s->check_rc < 0)
			http_reply_err(s->req, s->check_rc, "image rejected",
				       json_pack("{ss,ss}", "field", s->which, "reason", s->why));
		else
			http_reply_err(s->req, AT_EUNAVAILABLE, "could not store the work", NULL);
	} else {
		int files;
		spool_depth(p->spool, &files, NULL);
		count(p, &p->accepted);
		uplink_notify(s->app->uplink);
		/* the receipt is shown once: the node keeps only its hash */
		http_reply_json(s->req, 202,
				json_pack("{ss,ss,si}", "status", "queued", "receipt", s->receipt, "spool_depth",
					  files));
	}
	submission_free(s);
}

/* A form field as a NUL-terminated string into buf, or "" when absent. */
static int small_field(const struct multipart_part *parts, size_t n, const char *name, char *buf, size_t cap)
{
	const struct multipart_part *f = multipart_get(parts, n, name);
	buf[0] = 0;
	if (!f)
		return 0;
	if (f->len >= cap || memchr(f->data, 0, f->len))
		return AT_EINVAL;
	memcpy(buf, f->data, f->len);
	buf[f->len] = 0;
	return 0;
}

/* The style as /api/stylize took it: style [+ style2, alpha], or
 * style_reference=true for a picture; as JSON for works_style_parse. */
static int style_json(const struct multipart_part *parts, size_t n, char *out, size_t cap)
{
	char s1[24], s2[24], a[24], ref[8];
	if (small_field(parts, n, "style", s1, sizeof s1) < 0 || small_field(parts, n, "style2", s2, sizeof s2) < 0 ||
	    small_field(parts, n, "alpha", a, sizeof a) < 0 ||
	    small_field(parts, n, "style_reference", ref, sizeof ref) < 0)
		return AT_EINVAL;
	int yes = 0;
	if (ref[0] && config_parse_bool(ref, strlen(ref), &yes) == 0 && yes) {
		snprintf(out, cap, "{\"reference\":true}");
		return 0;
	}
	/* digits only: the text goes into JSON as a number */
	if (!s1[0] || strspn(s1, "0123456789") != strlen(s1) || (s2[0] && strspn(s2, "0123456789") != strlen(s2)) ||
	    (a[0] && strspn(a, "0123456789.") != strlen(a)))
		return AT_EINVAL;
	if (!s2[0])
		snprintf(out, cap, "{\"style\":%s}", s1);
	else
		snprintf(out, cap, "{\"style\":%s,\"style2\":%s,\"alpha\":%s}", s1, s2, a[0] ? a : "0.5");
	return 0;
}

void publish_post(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	if (limit_admit(app, req, LIMIT_PUBLISH) < 0)
		return;
	if (!app->cfg.atelierd || !app->publish) {
		http_reply_err(req, AT_EUNAVAILABLE, "publishing is off: this node has no atelierd to send works to",
			       NULL);
		return;
	}
	struct multipart_part parts[12];
	size_t n = 0;
	char why[160] = "";
	if (form_parse(req, parts, 12, &n, "sketch and painting") < 0)
		return;
	/* consent to display first: without it nothing else matters */
	const struct multipart_part *c = multipart_get(parts, n, "consent_display");
	int yes = 0;
	if (!c || config_parse_bool((const char *)c->data, c->len, &yes) < 0 || !yes) {
		http_reply_err(req, AT_EUNPROCESSABLE, "consent to show the work in the public gallery is required",
			       json_pack("{ss}", "field", "consent_display"));
		return;
	}
	const struct multipart_part *sk, *pt;
	int skf, ptf;
	if (works_image_part(req, parts, n, "sketch", &sk, &skf) < 0 ||
	    works_image_part(req, parts, n, "painting", &pt, &ptf) < 0)
		return;
	char stext[WORKS_STYLE_MAX], key[WORKS_STYLE_KEY_MAX];
	json_t *style = NULL;
	if (style_json(parts, n, stext, sizeof stext) < 0 ||
	    works_style_parse(stext, strlen(stext), &style, key, why, sizeof why) < 0) {
		http_reply_err(req, AT_EUNPROCESSABLE, "bad style: a style number, or style, style2 and alpha",
			       json_pack("{ss}", "field", "style"));
		return;
	}
	char ver[24];
	int64_t v = 0;
	/* "0" is what /api/stylize names a local model file by: no version */
	if (small_field(parts, n, "model_version", ver, sizeof ver) < 0 ||
	    (ver[0] && strcmp(ver, "0") != 0 && http_parse_id(ver, &v) < 0)) {
		json_decref(style);
		http_reply_err(req, AT_EINVAL, "model_version must be a positive integer",
			       json_pack("{ss}", "field", "model_version"));
		return;
	}
	char *title = NULL, *name = NULL;
	if (works_text_part(req, parts, n, "title", WORKS_TITLE_MAX, &title) < 0 ||
	    works_text_part(req, parts, n, "name", WORKS_NAME_MAX, &name) < 0) {
		json_decref(style);
		free(title);
		return;
	}
	struct submission *s = calloc(1, sizeof *s);
	char hex[65];
	json_t *meta = NULL;
	if (!s || receipt_new(s->receipt, hex) < 0) {
		json_decref(style);
		free(title);
		free(name);
		free(s);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot make a receipt", NULL);
		return;
	}
	snprintf(s->key, sizeof s->key, "%.32s", hex);
	char *stylestr = json_dumps(style, JSON_COMPACT);
	meta = json_pack("{ss,ss,ss,sI,ss,ss,ss,ss,sI}", "kind", "work", "sketch_type",
			 skf == IMAGE_PNG ? "image/png" : "image/jpeg", "painting_type",
			 ptf == IMAGE_PNG ? "image/png" : "image/jpeg", "sketch_len", (json_int_t)sk->len, "style",
			 stylestr ? stylestr : "{}", "model", app->cfg.model, "receipt_sha256", hex, "style_key", key,
			 "received_at", (json_int_t)time(NULL));
	free(stylestr);
	json_decref(style);
	if (meta && title)
		json_object_set_new(meta, "title", json_string(title));
	if (meta && name)
		json_object_set_new(meta, "name", json_string(name));
	if (meta && v > 0)
		json_object_set_new(meta, "model_version", json_integer(v));
	free(title);
	free(name);
	if (meta) {
		s->meta = json_dumps(meta, JSON_COMPACT);
		s->img = malloc(sk->len + pt->len);
	}
	json_decref(meta);
	if (!s->meta || !s->img) {
		submission_free(s);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	memcpy(s->img, sk->data, sk->len);
	memcpy(s->img + sk->len, pt->data, pt->len);
	s->sketch_len = sk->len;
	s->img_len = sk->len + pt->len;
	s->reserved = spool_file_size(strlen(s->meta), s->img_len);
	if (spool_reserve(app->publish->spool, s->reserved) < 0) {
		submission_free(s);
		http_req_add_header(req, "Retry-After", "60");
		http_reply_err(req, AT_EBUSY, "the works spool is full; try again later", NULL);
		return;
	}
	s->app = app;
	s->req = req;
	s->work.data = s;
	if (uv_queue_work(app->loop, &s->work, submission_work, submission_done) != 0) {
		spool_unreserve(app->publish->spool, s->reserved);
		submission_free(s);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule the write", NULL);
	}
}

/* ---- delivery (the uplink thread) ---- */

struct form {
	json_t *meta;
	const uint8_t *img;
	size_t len;
};

static void add_text(curl_mime *m, const char *name, const char *v)
{
	if (!v)
		return;
	curl_mimepart *p = curl_mime_addpart(m);
	curl_mime_name(p, name);
	curl_mime_data(p, v, CURL_ZERO_TERMINATED);
}

static curl_mime *build_form(CURL *h, void *arg)
{
	struct form *f = arg;
	curl_mime *m = curl_mime_init(h);
	if (!m)
		return NULL;
	json_t *o = f->meta;
	size_t sl = (size_t)json_integer_value(json_object_get(o, "sketch_len"));
	const char *st = json_string_value(json_object_get(o, "sketch_type"));
	const char *pt = json_string_value(json_object_get(o, "painting_type"));
	curl_mimepart *p = curl_mime_addpart(m);
	curl_mime_name(p, "sketch");
	curl_mime_data(p, (const char *)f->img, sl);
	curl_mime_filename(p, "sketch");
	curl_mime_type(p, st ? st : "image/png");
	p = curl_mime_addpart(m);
	curl_mime_name(p, "painting");
	curl_mime_data(p, (const char *)f->img + sl, f->len - sl);
	curl_mime_filename(p, "painting");
	curl_mime_type(p, pt ? pt : "image/jpeg");
	add_text(m, "style", json_string_value(json_object_get(o, "style")));
	add_text(m, "receipt_sha256", json_string_value(json_object_get(o, "receipt_sha256")));
	add_text(m, "title", json_string_value(json_object_get(o, "title")));
	add_text(m, "name", json_string_value(json_object_get(o, "name")));
	add_text(m, "model", json_string_value(json_object_get(o, "model")));
	json_t *v = json_object_get(o, "model_version");
	if (json_is_integer(v)) {
		char buf[24];
		snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
		add_text(m, "model_version", buf);
	}
	return m;
}

static int retryable(long status)
{
	return status >= 500 || status == 401 || status == 403 || status == 404 || status == 408 || status == 409 ||
	       status == 429 || status < 200;
}

/* One spooled work to atelierd: 0 when its file is done with (delivered,
 * refused for good, or unreadable: removed), else why it stays. */
static int send_one(struct publish *pb, struct http_client *c, const char *path)
{
	struct form f = {0};
	uint8_t *img = NULL;
	int rc = spool_read(path, &f.meta, &img, &f.len);
	size_t sl = (size_t)json_integer_value(json_object_get(f.meta, "sketch_len"));
	if (rc == AT_ECORRUPT || (rc == 0 && (sl == 0 || sl >= f.len))) {
		log_error("publish: dropping unreadable spool file %s", path);
		json_decref(f.meta);
		free(img);
		spool_remove(pb->spool, path);
		return 0;
	}
	if (rc < 0)
		return AT_EUNAVAILABLE;
	f.img = img;
	struct http_client_resp r;
	http_client_resp_init(&r, 64 << 10);
	rc = http_client_call(c,
			      &(struct http_client_req){.path = "/v1/works",
							.form = build_form,
							.form_arg = &f,
							.timeout_s = CALL_TIMEOUT},
			      &r);
	json_decref(f.meta);
	free(img);
	if (rc == AT_ECANCELLED) {
		http_client_resp_free(&r);
		return AT_ECANCELLED;
	}
	if (rc < 0 || retryable(r.status)) {
		if (rc == 0)
			log_warn("publish: POST /v1/works answered %ld; keeping the work: %.200s", r.status,
				 r.body.data ? r.body.data : "");
		http_client_resp_free(&r);
		return AT_EUNAVAILABLE;
	}
	if (r.status >= 200 && r.status < 300) {
		count(pb, &pb->delivered);
	} else {
		count(pb, &pb->rejected);
		log_warn("publish: atelierd rejected a work (%ld): %.200s", r.status, r.body.data ? r.body.data : "");
	}
	http_client_resp_free(&r);
	spool_remove(pb->spool, path);
	return 0;
}

int publish_drain(struct serve_app *app, struct http_client *c)
{
	struct publish *pb = app->publish;
	if (!pb)
		return 0;
	for (;;) {
		char path[4096];
		if (spool_oldest(pb->spool, path, sizeof path) < 0)
			return 0;
		/* marked while it is sent: a withdrawal waits for the answer
		 * (spool_withdraw), so the work is in the spool or delivered */
		if (spool_send_begin(pb->spool, path) < 0)
			continue; /* withdrawn meanwhile */
		int rc = send_one(pb, c, path);
		spool_send_end(pb->spool);
		if (rc < 0)
			return rc;
	}
}

/* ---- GET / DELETE /api/works/mine ---- */

struct mine {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	int del;
	char token[RECEIPT_LEN + 1];
	char hex[65];
	int spooled; /* found in this node's spool (and removed, for a DELETE) */
	int rc;
	long status;
	json_t *answer;
};

static void mine_work(uv_work_t *w)
{
	struct mine *m = w->data;
	struct publish *p = m->app->publish;
	char path[4200];
	if (p) {
		char key[33];
		snprintf(key, sizeof key, "%.32s", m->hex);
		int rc = m->del ? spool_withdraw(p->spool, key, SPOOL_WAIT_S)
				: spool_find(p->spool, key, path, sizeof path);
		if (rc == 0) {
			m->spooled = 1;
			if (m->del)
				count(p, &p->withdrawn_spooled);
		}
	}
	/* a DELETE goes upstream as well: the uplink may have sent it meanwhile */
	struct http_client c;
	puller_client(m->app, &c, "atelier-serve");
	struct http_client_resp r;
	http_client_resp_init(&r, 64 << 10);
	m->rc = http_client_call(&c,
				 &(struct http_client_req){.method = m->del ? "DELETE" : "GET",
							   .path = "/v1/works/by-receipt",
							   .header_name = RECEIPT_HEADER,
							   .header_value = m->token,
							   .timeout_s = 10},
				 &r);
	m->status = r.status;
	if (m->rc == 0 && r.status == 200 && r.body.data)
		m->answer = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
	http_client_resp_free(&r);
}

static void mine_done(uv_work_t *w, int status)
{
	struct mine *m = w->data;
	if (status < 0)
		http_reply_err(m->req, AT_EUNAVAILABLE, "server shutting down", NULL);
	else if (json_is_object(m->answer)) {
		http_reply_json(m->req, 200, m->answer);
		m->answer = NULL;
	} else if (m->spooled)
		http_reply_json(m->req, 200,
				m->del ? json_pack("{ss,ss,sb}", "kind", "work", "status", "withdrawn", "withdrawn", 1)
				       : json_pack("{ss,ss}", "kind", "work", "status", "queued"));
	else if (m->rc == 0 && m->status == 404)
		http_reply_err(m->req, AT_ENOTFOUND, "no work has this receipt", NULL);
	else
		http_reply_err(m->req, AT_EUNAVAILABLE, "atelierd did not answer; try again later",
			       json_pack("{sI}", "upstream_status", (json_int_t)m->status));
	json_decref(m->answer);
	free(m);
}

static void mine(http_req_t *req, int del)
{
	struct serve_app *app = http_req_app(req);
	const char *tok;
	uint8_t sha[32];
	if (receipt_of_request(req, "work", &tok, sha) < 0)
		return;
	char hex[65];
	at_hex_encode(hex, sha, sizeof sha);
	if (!app->cfg.atelierd) {
		http_reply_err(req, AT_EUNAVAILABLE, "this node has no atelierd", NULL);
		return;
	}
	struct mine *m = calloc(1, sizeof *m);
	if (!m) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	m->app = app;
	m->req = req;
	m->del = del;
	memcpy(m->token, tok, RECEIPT_LEN);
	memcpy(m->hex, hex, sizeof hex);
	m->work.data = m;
	if (uv_queue_work(app->loop, &m->work, mine_work, mine_done) != 0) {
		free(m);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule the call", NULL);
	}
}

void publish_get_mine(http_req_t *req) { mine(req, 0); }
void publish_delete_mine(http_req_t *req) { mine(req, 1); }

int publish_metrics(struct publish *p, struct at_buf *b)
{
	if (!p)
		return 0;
	int files;
	spool_depth(p->spool, &files, NULL);
	pthread_mutex_lock(&p->mu);
	int rc = at_buf_printf(
		b,
		"# HELP atelier_serve_works_spool_depth Published works waiting for atelierd.\n"
		"# TYPE atelier_serve_works_spool_depth gauge\natelier_serve_works_spool_depth %d\n"
		"# HELP atelier_serve_works_total Works taken by POST /api/publish and what became of them.\n"
		"# TYPE atelier_serve_works_total counter\n"
		"atelier_serve_works_total{outcome=\"accepted\"} %llu\n"
		"atelier_serve_works_total{outcome=\"refused\"} %llu\n"
		"atelier_serve_works_total{outcome=\"delivered\"} %llu\n"
		"atelier_serve_works_total{outcome=\"rejected\"} %llu\n"
		"atelier_serve_works_total{outcome=\"withdrawn_spooled\"} %llu\n",
		files, (unsigned long long)p->accepted, (unsigned long long)p->refused,
		(unsigned long long)p->delivered, (unsigned long long)p->rejected,
		(unsigned long long)p->withdrawn_spooled);
	pthread_mutex_unlock(&p->mu);
	return rc;
}
