/*
 * stylize.c — POST /api/stylize (see stylize.h).
 *
 * Ownership: a job owns a private copy of the image bytes (h2o frees the
 * request body if the client leaves while a worker still reads it) and one
 * model reference, released by the worker right after the forward pass so a
 * swapped-out model is freed off the loop. The reply is sent from the
 * after-work callback on the loop, the only thread that may touch h2o.
 *
 * Why our own FIFO in front of the threadpool: the threadpool also runs
 * spool writes and model reloads; capping inference at cfg.threads running
 * jobs (the pool has spare threads, see main.c) keeps those from waiting
 * behind a burst of paintings, and the bounded FIFO turns overload into a
 * quick 503 instead of an unbounded queue.
 */
#include "stylize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "image.h"
#include "limit.h"
#include "log.h"
#include "model_slot.h"
#include "multipart.h"
#include "serve.h"
#include "sketchnorm.h"
#include "stats.h"
#include "style_param.h"

#define STYLIZE_MAX_PARTS 16

struct style_src {
	int present;
	int is_image;
	uint64_t seed;
	const uint8_t *img; /* into job->bytes */
	size_t len;
	struct image_raw raw; /* decoded on the worker */
};

struct stylize_job {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	struct stylize_job *next;
	struct model_ref *model;
	uint8_t *bytes; /* all image parts, copied */
	const uint8_t *content;
	size_t content_len;
	struct style_src a, b;
	float alpha;
	uint64_t t0;
	/* results */
	int rc;
	int status;
	char why[256];
	uint8_t *jpeg;
	size_t jpeg_len;
	int64_t version;
	char sha256[65];
	char crop[96]; /* x-sketch-crop: the input square the painting shows; "" when not normalised */
};

struct stylize_queue {
	struct stylize_job *head, *tail;
	int waiting;
	int running;
	uint64_t started; /* inferences handed to the threadpool */
	uint64_t dropped; /* jobs dropped before starting: their client had left */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int stylize_queue_new(struct stylize_queue **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : AT_ENOMEM;
}

void stylize_queue_free(struct stylize_queue *q) { free(q); }

int stylize_queue_depth(const struct stylize_queue *q) { return q ? q->waiting + q->running : 0; }

int stylize_metrics(const struct stylize_queue *q, struct at_buf *b)
{
	return at_buf_printf(b,
			     "# HELP atelier_serve_inferences_total Stylize jobs started on the threadpool.\n"
			     "# TYPE atelier_serve_inferences_total counter\natelier_serve_inferences_total %llu\n"
			     "# HELP atelier_serve_stylize_dropped_total Stylize jobs dropped before they started.\n"
			     "# TYPE atelier_serve_stylize_dropped_total counter\n"
			     "atelier_serve_stylize_dropped_total{reason=\"client_gone\"} %llu\n",
			     (unsigned long long)q->started, (unsigned long long)q->dropped);
}

static void job_free(struct stylize_job *j)
{
	if (!j)
		return;
	model_ref_release(j->model);
	image_raw_free(&j->a.raw);
	image_raw_free(&j->b.raw);
	free(j->bytes);
	free(j->jpeg);
	free(j);
}

/* ---- the worker ---- */

static int decode_style(struct stylize_job *j, struct style_src *s, size_t max_pixels, const char *field)
{
	if (!s->is_image)
		return 0;
	char why[160] = "";
	int rc = image_decode(s->img, s->len, 3, max_pixels, &s->raw, why, sizeof why);
	if (rc < 0)
		snprintf(j->why, sizeof j->why, "%s: %s", field, why[0] ? why : at_strerror(rc));
	return rc;
}

static void fill_style(am_style *st, const struct style_src *s)
{
	memset(st, 0, sizeof *st);
	if (s->is_image) {
		st->kind = AM_STYLE_REFERENCE;
		st->rgb = s->raw.pix;
		st->w = s->raw.width;
		st->h = s->raw.height;
	} else {
		st->kind = AM_STYLE_SEED;
		st->seed = s->seed;
	}
}

static void work_run(uv_work_t *w)
{
	struct stylize_job *j = w->data;
	const struct serve_settings *cfg = &j->app->cfg;
	struct image_raw sketch = {0};
	uint8_t *rgb = NULL, *norm = NULL;
	am_status_t *st = NULL;
	char why[160] = "";
	int out = cfg->output_size;

	j->rc = image_decode(j->content, j->content_len, 1, cfg->max_pixels, &sketch, why, sizeof why);
	if (j->rc < 0) {
		snprintf(j->why, sizeof j->why, "contentImage: %s", why[0] ? why : at_strerror(j->rc));
		goto out;
	}
	if ((j->rc = decode_style(j, &j->a, cfg->max_pixels, "styleImage")) < 0 ||
	    (j->rc = decode_style(j, &j->b, cfg->max_pixels, "styleImage2")) < 0)
		goto out;
	am_style sa, sb, mix, *style = &sa;
	fill_style(&sa, &j->a);
	if (j->b.present) {
		fill_style(&sb, &j->b);
		mix = (am_style){.kind = AM_STYLE_MIX, .a = &sa, .b = &sb, .alpha = j->alpha};
		style = &mix;
	}
	/* The model sees what prepare trained it on: the sketch normalised
	 * (lib/sketchnorm) to the model's own square. A blank page has no ink
	 * to crop to and goes in as it is. */
	am_config mc;
	am_model_get_config(j->model->m, &mc);
	const uint8_t *gray = sketch.pix;
	int gw = sketch.width, gh = sketch.height;
	norm = malloc((size_t)mc.image_size * mc.image_size);
	rgb = malloc((size_t)out * out * 3);
	st = am_status_new();
	if (!rgb || !st || !norm) {
		j->rc = AT_ENOMEM;
		goto out;
	}
	struct sketchnorm_info ni;
	int nrc = sketchnorm_apply(sketch.pix, sketch.width, sketch.height, mc.image_size, NULL, norm, &ni);
	if (nrc == 0) {
		gray = norm;
		gw = gh = mc.image_size;
		snprintf(j->crop, sizeof j->crop, "%.2f,%.2f,%.2f", ni.crop_x, ni.crop_y, ni.crop_side);
	} else if (nrc != AT_EUNPROCESSABLE) {
		j->rc = nrc;
		snprintf(j->why, sizeof j->why, "contentImage: sketch normalisation: %s", at_strerror(nrc));
		goto out;
	}
	j->rc = am_model_stylize(j->model->m, gray, gw, gh, style, rgb, out, out, st);
	j->version = j->model->version;
	snprintf(j->sha256, sizeof j->sha256, "%s", j->model->sha256);
	/* Release now, on this thread: if a swap happened meanwhile, the old
	 * model is freed here rather than on the loop. */
	model_ref_release(j->model);
	j->model = NULL;
	if (j->rc < 0) {
		snprintf(j->why, sizeof j->why, "model: %s", am_status_message(st));
		if (j->rc != AT_EINVAL && j->rc != AT_ERANGE)
			j->rc = AT_EINTERNAL;
		goto out;
	}
	j->rc = image_encode_jpeg(rgb, out, out, cfg->jpeg_quality, &j->jpeg, &j->jpeg_len);
	if (j->rc < 0)
		snprintf(j->why, sizeof j->why, "JPEG encoding failed");
out:
	am_status_free(st);
	free(rgb);
	free(norm);
	image_raw_free(&sketch);
}

static void pump(struct serve_app *app);

static void work_done(uv_work_t *w, int status)
{
	struct stylize_job *j = w->data;
	struct serve_app *app = j->app;
	app->sq->running--;
	if (j->rc == 0) {
		/* which model answered: clients and tests can follow a swap */
		char v[32];
		snprintf(v, sizeof v, "%lld", (long long)j->version);
		http_req_add_header(j->req, "x-model-version", v);
		http_req_add_header(j->req, "x-model-sha256", j->sha256);
		if (j->crop[0])
			http_req_add_header(j->req, "x-sketch-crop", j->crop);
		size_t len = j->jpeg_len;
		void *jpeg = j->jpeg;
		j->jpeg = NULL;
		stats_record(app->stats, 200, (double)(now_ns() - j->t0) / 1e9);
		http_reply_owned(j->req, 200, "image/jpeg", jpeg, len);
	} else {
		/* What the client sent is at fault (the code says why) or the node
		 * is (INTERNAL). The decoder's INVAL and RANGE are about the
		 * content it was given: UNPROCESSABLE, not a bad request. */
		int err;
		switch (j->rc) {
		case AT_EUNSUPPORTED:
		case AT_ECORRUPT:
		case AT_EUNPROCESSABLE:
		case AT_ENOMEM: err = j->rc; break;
		case AT_EINVAL:
		case AT_ERANGE: err = AT_EUNPROCESSABLE; break;
		default: err = AT_EINTERNAL; break;
		}
		int http_status = at_err_http_status(err);
		if (http_status >= 500)
			log_warn("stylize: %s (%s)", j->why, at_err_name(j->rc));
		stats_record(app->stats, http_status, (double)(now_ns() - j->t0) / 1e9);
		http_reply_err(j->req, err, j->why[0] ? j->why : at_strerror(j->rc), NULL);
	}
	job_free(j);
	pump(app);
}

/* A job whose client already left is answered (499, logged and counted
 * only) and freed instead of run: a forward pass nobody reads would delay
 * the requests behind it. */
static int drop_if_gone(struct serve_app *app, struct stylize_job *j)
{
	if (!http_req_gone(j->req))
		return 0;
	app->sq->dropped++;
	http_reply_empty(j->req, HTTP_STATUS_CLIENT_GONE);
	job_free(j);
	return 1;
}

/* Drops every waiting job whose client left; run when the queue is full so
 * that fire-and-forget requests cannot keep an honest one out. */
static void sweep_gone(struct serve_app *app)
{
	struct stylize_queue *q = app->sq;
	struct stylize_job **pp = &q->head, *prev = NULL;
	while (*pp) {
		struct stylize_job *j = *pp;
		if (http_req_gone(j->req)) {
			*pp = j->next;
			q->waiting--;
			drop_if_gone(app, j);
		} else {
			prev = j;
			pp = &j->next;
		}
	}
	q->tail = prev;
}

static void pump(struct serve_app *app)
{
	struct stylize_queue *q = app->sq;
	while (q->head && q->running < app->cfg.threads) {
		struct stylize_job *j = q->head;
		q->head = j->next;
		if (!q->head)
			q->tail = NULL;
		q->waiting--;
		if (drop_if_gone(app, j))
			continue;
		q->started++;
		j->work.data = j;
		if (uv_queue_work(app->loop, &j->work, work_run, work_done) != 0) {
			stats_record(app->stats, 503, 0);
			http_reply_err(j->req, AT_EUNAVAILABLE, "cannot schedule the request", NULL);
			job_free(j);
			continue;
		}
		q->running++;
	}
}

/* ---- admission (on the loop) ---- */

static void reply_bad(struct serve_app *app, http_req_t *req, uint64_t t0, int err, const char *msg, json_t *detail)
{
	stats_record(app->stats, at_err_http_status(err), (double)(now_ns() - t0) / 1e9);
	http_reply_err(req, err, msg, detail);
}

/* Checks the image part of a style (if any) and its number otherwise. On
 * failure replies and returns -1. */
static int admit_style(struct serve_app *app, http_req_t *req, uint64_t t0, const struct multipart_part *num,
		       const struct multipart_part *img, const char *num_name, const char *img_name,
		       struct style_src *out)
{
	memset(out, 0, sizeof *out);
	if (img) {
		if (num) {
			reply_bad(app, req, t0, AT_EUNPROCESSABLE,
				  "give either a style number or a style image, not both",
				  json_pack("{s[ss]}", "fields", num_name, img_name));
			return -1;
		}
		if (image_sniff(img->data, img->len) < 0) {
			reply_bad(app, req, t0, AT_EUNSUPPORTED, "style image must be PNG or JPEG",
				  json_pack("{ss}", "field", img_name));
			return -1;
		}
		out->present = out->is_image = 1;
		out->img = img->data;
		out->len = img->len;
		return 0;
	}
	if (num) {
		if (style_param_number(num->data, num->len, &out->seed) < 0) {
			reply_bad(app, req, t0, AT_EUNPROCESSABLE,
				  "style must be an integer 0..4294967295 (digits only)",
				  json_pack("{ss,ss%}", "field", num_name, "value", (const char *)num->data,
					    num->len > 64 ? (size_t)64 : num->len));
			return -1;
		}
		out->present = 1;
	}
	return 0;
}

void stylize_post(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	if (limit_admit(app, req, LIMIT_STYLIZE) < 0)
		return;
	uint64_t t0 = now_ns();
	size_t ctlen = 0, blen;
	const char *ct = http_req_header(req, "content-type", &ctlen);
	const uint8_t *body = http_req_body(req, &blen);
	if (!ct || ctlen < 19 || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		reply_bad(app, req, t0, AT_EUNSUPPORTED, "expected multipart/form-data with a contentImage field",
			  json_pack("{ss%}", "content_type", ct ? ct : "", ct ? ctlen : 0));
		return;
	}
	struct multipart_part parts[STYLIZE_MAX_PARTS];
	size_t nparts = 0;
	char why[160] = "";
	int rc = multipart_parse(ct, ctlen, body, blen, parts, STYLIZE_MAX_PARTS, &nparts, why, sizeof why);
	if (rc < 0) {
		reply_bad(app, req, t0, rc, "malformed multipart body",
			  json_pack("{ss}", "reason", why[0] ? why : at_strerror(rc)));
		return;
	}
	const struct multipart_part *content = multipart_get(parts, nparts, "contentImage");
	if (!content) {
		reply_bad(app, req, t0, AT_EINVAL, "missing field contentImage (the sketch, PNG or JPEG)",
			  json_pack("{ss}", "field", "contentImage"));
		return;
	}
	if (image_sniff(content->data, content->len) < 0) {
		reply_bad(app, req, t0, AT_EUNSUPPORTED, "contentImage must be PNG or JPEG",
			  json_pack("{ss}", "field", "contentImage"));
		return;
	}
	struct style_src a, b;
	if (admit_style(app, req, t0, multipart_get(parts, nparts, "style"), multipart_get(parts, nparts, "styleImage"),
			"style", "styleImage", &a) < 0)
		return;
	if (admit_style(app, req, t0, multipart_get(parts, nparts, "style2"),
			multipart_get(parts, nparts, "styleImage2"), "style2", "styleImage2", &b) < 0)
		return;
	if (!a.present)
		a.present = 1; /* the seed service's default: style 0 */
	float alpha = 0.5f;
	const struct multipart_part *ap = multipart_get(parts, nparts, "alpha");
	if (ap) {
		if (!b.present) {
			reply_bad(app, req, t0, AT_EUNPROCESSABLE,
				  "alpha mixes two styles: give style2 or styleImage2 too",
				  json_pack("{ss}", "field", "alpha"));
			return;
		}
		if (style_param_alpha(ap->data, ap->len, &alpha) < 0) {
			reply_bad(app, req, t0, AT_EUNPROCESSABLE, "alpha must be a decimal number in [0, 1]",
				  json_pack("{ss,ss%}", "field", "alpha", "value", (const char *)ap->data,
					    ap->len > 64 ? (size_t)64 : ap->len));
			return;
		}
	}
	struct model_ref *model = model_slot_acquire(app->slot);
	if (!model) {
		http_req_add_header(req, "Retry-After", "5");
		reply_bad(app, req, t0, AT_ENOTREADY, "no model loaded yet",
			  json_pack("{ss,ss}", "model", app->cfg.model, "channel", app->cfg.channel));
		return;
	}
	if (app->sq->waiting >= app->cfg.max_queue)
		sweep_gone(app);
	if (app->sq->waiting >= app->cfg.max_queue) {
		model_ref_release(model);
		http_req_add_header(req, "Retry-After", "1");
		reply_bad(app, req, t0, AT_EBUSY, "busy: too many paintings waiting",
			  json_pack("{si}", "queue", app->sq->waiting));
		return;
	}
	struct stylize_job *j = calloc(1, sizeof *j);
	size_t total = content->len + (a.is_image ? a.len : 0) + (b.is_image ? b.len : 0);
	if (j)
		j->bytes = malloc(total ? total : 1);
	if (!j || !j->bytes) {
		free(j);
		model_ref_release(model);
		reply_bad(app, req, t0, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	j->app = app;
	j->req = req;
	j->model = model;
	j->t0 = t0;
	j->alpha = alpha;
	uint8_t *p = j->bytes;
	memcpy(p, content->data, content->len);
	j->content = p;
	j->content_len = content->len;
	p += content->len;
	j->a = a;
	j->b = b;
	if (a.is_image) {
		memcpy(p, a.img, a.len);
		j->a.img = p;
		p += a.len;
	}
	if (b.is_image) {
		memcpy(p, b.img, b.len);
		j->b.img = p;
	}
	struct stylize_queue *q = app->sq;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	q->waiting++;
	pump(app);
}
