/*
 * contribute.c — POST /api/contribute (see contribute.h). The handler checks
 * the multipart form on the loop (image PNG or JPEG, consent, contributor),
 * reserves room in the spool, and on the threadpool runs the sketch through
 * atelierd's own check (image_normalize() with the sketch defaults and the
 * node's --min-ink/--max-ink) before spool_write() lays the file down: a
 * sketch atelierd would refuse (blank, too little or too much ink, corrupt)
 * is a 422 with the reason now, not a thank-you and a silent drop later. The
 * spool still keeps the bytes as sent (atelierd normalises them again). The
 * uplink is told once the file is durable. The reply carries the
 * contribution's receipt (lib/receipt.h), made here and shown only in it; the
 * spool file keeps the receipt's sha256, which travels on to atelierd.
 */
#include "contribute.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "form.h"
#include "image.h"
#include "limit.h"
#include "multipart.h"
#include "receipt.h"
#include "serve.h"
#include "spool.h"
#include "uplink.h"

struct contribution {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	char *meta;   /* one line of compact JSON */
	uint8_t *img; /* a copy: the request's body is not ours on the threadpool */
	size_t img_len;
	size_t reserved; /* spool_file_size(): what the spool holds for it */
	struct image_opts opts;
	int check_rc;     /* image_normalize()'s verdict: < 0 and nothing was written */
	double ink_ratio; /* of the input, -1 when not measured */
	char why[160];
	int rc;
	char receipt[RECEIPT_LEN + 1]; /* shown once, in the reply; only its hash is kept */
	char receipt_sha[65];
};

static void contribution_free(struct contribution *c)
{
	if (!c)
		return;
	free(c->meta);
	free(c->img);
	free(c);
}

static void contribute_work(uv_work_t *w)
{
	struct contribution *c = w->data;
	struct image_norm norm = {.ink_ratio = -1};
	c->check_rc = image_normalize(c->img, c->img_len, &c->opts, &norm, c->why, sizeof c->why);
	c->ink_ratio = norm.ink_ratio;
	image_norm_free(&norm);
	if (c->check_rc < 0)
		return;
	/* the file is named by the receipt's hash (its first 32 hex digits), so
	 * GET/DELETE /api/sketches/mine find it while it waits (mine.c) */
	char key[33];
	snprintf(key, sizeof key, "%.32s", c->receipt_sha);
	c->rc = spool_write_keyed(c->app->spool, key, c->meta, c->img, c->img_len);
}

/* The reply atelierd's ingest gives the same sketch (orchestrator/ingest.c,
 * normalize_done): the same messages and detail fields. */
static void reply_rejected(struct contribution *c)
{
	json_t *d = json_pack("{ss,ss}", "field", "image", "reason", c->why);
	const char *msg = "image rejected";
	switch (c->check_rc) {
	case AT_EUNSUPPORTED: msg = "not a PNG or JPEG image"; break;
	case AT_ECORRUPT: msg = "corrupt or truncated image"; break;
	case AT_EUNPROCESSABLE:
		if (strstr(c->why, "pixels")) {
			msg = "image too large: its pixels or a side are over the cap";
			break;
		}
		msg = "sketch rejected: ink ratio out of range";
		if (c->ink_ratio >= 0)
			json_object_set_new(d, "ink_ratio", json_real(c->ink_ratio));
		json_object_set_new(d, "min_ink", json_real(c->opts.min_ink));
		json_object_set_new(d, "max_ink", json_real(c->opts.max_ink));
		break;
	default: break;
	}
	http_reply_err(c->req, c->check_rc, msg, d);
}

static void contribute_done(uv_work_t *w, int status)
{
	struct contribution *c = w->data;
	struct spool *s = c->app->spool;
	if (status < 0) {
		spool_unreserve(s, c->reserved);
		http_reply_err(c->req, AT_EUNAVAILABLE, "server shutting down", NULL);
	} else if (c->check_rc < 0) {
		spool_unreserve(s, c->reserved);
		reply_rejected(c);
	} else if (c->rc < 0) {
		spool_unreserve(s, c->reserved);
		http_reply_err(c->req, AT_EUNAVAILABLE, "could not store the contribution", NULL);
	} else {
		int files;
		spool_depth(s, &files, NULL);
		uplink_notify(c->app->uplink);
		http_reply_json(c->req, 202,
				json_pack("{ss,si,ss}", "status", "queued", "spool_depth", files, "receipt",
					  c->receipt));
	}
	contribution_free(c);
}

/* atelierd reads consent with the same function (lib/config.h); here
 * anything but a yes (no, a missing field, an unrecognised word) is the 422 */
static int consent_given(const struct multipart_part *p)
{
	int yes = 0;
	return p && config_parse_bool((const char *)p->data, p->len, &yes) == 0 && yes;
}

void contribute_post(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	if (limit_admit(app, req, LIMIT_CONTRIBUTE) < 0)
		return;
	if (!app->cfg.atelierd || !app->spool) {
		http_reply_err(req, AT_EUNAVAILABLE, "contributions are off: this node has no atelierd to send them to",
			       NULL);
		return;
	}
	struct multipart_part parts[8];
	size_t nparts = 0;
	if (form_parse(req, parts, 8, &nparts, "an image field") < 0)
		return;
	const struct multipart_part *img = multipart_get(parts, nparts, "image");
	if (!img) {
		http_reply_err(req, AT_EINVAL, "missing field image (the sketch, PNG or JPEG)",
			       json_pack("{ss}", "field", "image"));
		return;
	}
	int fmt = image_sniff(img->data, img->len);
	if (fmt < 0) {
		http_reply_err(req, AT_EUNSUPPORTED, "image must be PNG or JPEG", json_pack("{ss}", "field", "image"));
		return;
	}
	/* The spool keeps the bytes undecoded; the header alone shows the caps
	 * atelierd's ingest would refuse it for (its default pixel cap, the side
	 * cap), so the sender hears it now. */
	char why[160] = "";
	int rc = image_probe(img->data, img->len, 0, NULL, NULL, why, sizeof why);
	if (rc < 0) {
		http_reply_err(req, rc, why, json_pack("{ss}", "field", "image"));
		return;
	}
	if (!consent_given(multipart_get(parts, nparts, "consent"))) {
		http_reply_err(req, AT_EUNPROCESSABLE, "consent is required to contribute a sketch",
			       json_pack("{ss}", "field", "consent"));
		return;
	}
	const struct multipart_part *who = multipart_get(parts, nparts, "contributor");
	if (who && who->len > 128) {
		http_reply_err(req, AT_EUNPROCESSABLE, "contributor is at most 128 bytes",
			       json_pack("{ss}", "field", "contributor"));
		return;
	}
	char receipt[RECEIPT_LEN + 1], receipt_sha[65];
	if (receipt_new(receipt, receipt_sha) < 0) {
		http_reply_err(req, AT_EUNAVAILABLE, "cannot make a receipt: no random bytes", NULL);
		return;
	}
	json_t *meta = json_pack("{ss,sI,ss}", "content_type", fmt == IMAGE_PNG ? "image/png" : "image/jpeg",
				 "received_at", (json_int_t)time(NULL), "receipt_sha256", receipt_sha);
	if (meta && who && who->len) {
		json_t *name = json_stringn((const char *)who->data, who->len);
		if (!name) {
			json_decref(meta);
			http_reply_err(req, AT_EUNPROCESSABLE, "contributor must be UTF-8 text",
				       json_pack("{ss}", "field", "contributor"));
			return;
		}
		json_object_set_new(meta, "contributor", name);
	}
	struct contribution *c = calloc(1, sizeof *c);
	if (c && meta) {
		c->meta = json_dumps(meta, JSON_COMPACT);
		c->img = malloc(img->len ? img->len : 1);
	}
	json_decref(meta);
	if (!c || !c->meta || !c->img) {
		contribution_free(c);
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	memcpy(c->img, img->data, img->len);
	memcpy(c->receipt, receipt, sizeof receipt);
	memcpy(c->receipt_sha, receipt_sha, sizeof receipt_sha);
	c->img_len = img->len;
	c->reserved = spool_file_size(strlen(c->meta), c->img_len);
	if (spool_reserve(app->spool, c->reserved) < 0) {
		int files;
		size_t bytes;
		spool_depth(app->spool, &files, &bytes);
		contribution_free(c);
		http_req_add_header(req, "Retry-After", "60");
		http_reply_err(req, AT_EBUSY, "the contribution spool is full; try again later",
			       json_pack("{si,sI}", "files", files, "bytes", (json_int_t)bytes));
		return;
	}
	c->app = app;
	c->req = req;
	c->ink_ratio = -1;
	image_opts_init(&c->opts, IMAGE_SKETCH);
	c->opts.min_ink = app->cfg.min_ink;
	c->opts.max_ink = app->cfg.max_ink;
	c->work.data = c;
	if (uv_queue_work(app->loop, &c->work, contribute_work, contribute_done) != 0) {
		spool_unreserve(app->spool, c->reserved);
		contribution_free(c);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule the write", NULL);
	}
}
