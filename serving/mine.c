/*
 * mine.c — see mine.h. Both the spool lookup (a folder listing) and the call
 * to atelierd (lib/http_client, blocking) run on the threadpool; the loop only
 * checks the header and sends the answer. A receipt that is malformed, in no
 * spool file and unknown to atelierd is one 404, whichever it was.
 *
 * The spool and atelierd are asked in that order, and spool_withdraw() waits
 * out a send in progress, so a contribution is never between the two when a
 * DELETE looks for it: it is in the spool (removed here) or delivered (and
 * withdrawn by atelierd).
 */
#include "mine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "http_client.h"
#include "puller.h"
#include "receipt.h"
#include "serve.h"
#include "spool.h"

#define MINE_CALL_TIMEOUT 15L
/* a send in progress answers within the uplink's own call timeout */
#define MINE_SPOOL_WAIT_S 20

struct mine {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	int del;
	char token[RECEIPT_LEN + 1];
	char key[33];
	/* the outcome, read on the loop */
	int rc;             /* < 0: reply this error */
	int spooled;        /* answered from the spool */
	long status;        /* atelierd's status */
	struct at_buf body; /* atelierd's body */
	char why[160];
};

static void mine_work(uv_work_t *w)
{
	struct mine *m = w->data;
	struct spool *s = m->app->spool;
	char path[4200];
	if (s) {
		int rc = m->del ? spool_withdraw(s, m->key, MINE_SPOOL_WAIT_S)
				: spool_find(s, m->key, path, sizeof path);
		if (rc == 0) {
			m->spooled = 1;
			return;
		}
		if (rc != AT_ENOTFOUND) {
			m->rc = rc == AT_EBUSY ? AT_EBUSY : AT_EIO;
			snprintf(m->why, sizeof m->why, "%s",
				 rc == AT_EBUSY ? "the contribution is being delivered; try again"
						: "cannot read this node's spool");
			return;
		}
	}
	if (!m->app->cfg.atelierd) {
		m->rc = AT_ENOTFOUND;
		return;
	}
	struct http_client c;
	puller_client(m->app, &c, NULL);
	snprintf(c.user_agent, sizeof c.user_agent, "atelier-serve/%s", m->app->name);
	struct http_client_resp r;
	http_client_resp_init(&r, 64 << 10);
	int rc = http_client_call(&c,
				  &(struct http_client_req){.method = m->del ? "DELETE" : "GET",
							    .path = "/v1/sketches/by-receipt",
							    .timeout_s = MINE_CALL_TIMEOUT,
							    .header_name = RECEIPT_HEADER,
							    .header_value = m->token},
				  &r);
	if (rc < 0) {
		m->rc = AT_EUNAVAILABLE;
		snprintf(m->why, sizeof m->why, "atelierd is unreachable; try again later");
	} else {
		m->status = r.status;
		m->body = r.body;
		at_buf_init(&r.body, 0);
	}
	http_client_resp_free(&r);
}

static void mine_done(uv_work_t *w, int status)
{
	struct mine *m = w->data;
	http_req_t *req = m->req;
	if (status < 0) {
		http_reply_err(req, AT_EUNAVAILABLE, "server shutting down", NULL);
	} else if (m->spooled) {
		http_reply_json(req, 200,
				m->del ? json_pack("{ss,ss,sb,sb}", "kind", "sketch", "status", "deleted", "withdrawn",
						   1, "spooled", 1)
				       : json_pack("{ss,ss,sb}", "kind", "sketch", "status", "pending", "spooled", 1));
	} else if (m->rc == AT_ENOTFOUND || (m->rc == 0 && m->status == 404)) {
		http_reply_err(req, AT_ENOTFOUND, "no sketch has this receipt",
			       json_pack("{ss}", "header", RECEIPT_HEADER));
	} else if (m->rc < 0) {
		if (m->rc == AT_EBUSY || m->rc == AT_EUNAVAILABLE)
			http_req_add_header(req, "Retry-After", "30");
		http_reply_err(req, m->rc, m->why[0] ? m->why : "cannot look the receipt up", NULL);
	} else {
		json_t *o = m->status == 200 ? json_loadb(m->body.data, m->body.len, 0, NULL) : NULL;
		if (json_is_object(o)) {
			json_object_set_new(o, "spooled", json_false());
			http_reply_json(req, 200, o);
		} else {
			json_decref(o);
			/* atelierd refused the node (token, database): not the contributor's fault */
			http_req_add_header(req, "Retry-After", "30");
			http_reply_err(req, AT_EUNAVAILABLE, "atelierd could not answer; try again later",
				       json_pack("{sI}", "upstream_status", (json_int_t)m->status));
		}
	}
	at_buf_free(&m->body);
	free(m);
}

static void mine_start(http_req_t *req, int del)
{
	struct serve_app *app = http_req_app(req);
	const char *tok;
	uint8_t sha[32];
	if (receipt_of_request(req, "sketch", &tok, sha) < 0)
		return;
	struct mine *m = calloc(1, sizeof *m);
	if (!m) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	m->app = app;
	m->req = req;
	m->del = del;
	memcpy(m->token, tok, RECEIPT_LEN);
	char hex[65];
	at_hex_encode(hex, sha, 32);
	snprintf(m->key, sizeof m->key, "%.32s", hex);
	at_buf_init(&m->body, 0);
	m->work.data = m;
	if (uv_queue_work(app->loop, &m->work, mine_work, mine_done) != 0) {
		free(m);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule the lookup", NULL);
	}
}

void mine_get(http_req_t *req) { mine_start(req, 0); }
void mine_delete(http_req_t *req) { mine_start(req, 1); }
