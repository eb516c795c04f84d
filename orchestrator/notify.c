/*
 * notify.c — alert webhooks (see notify.h).
 *
 * Flow: NOTIFY atelier_webhooks (or the 1 s tick, for anything missed) →
 * one claim query that marks new outbox rows claimed and inserts one
 * 'pending' webhook_deliveries row per (event, URL) → in-memory deliveries,
 * sent through curl's multi handle → each attempt's outcome UPDATEs its row.
 * At most NOTIFY_MAX_INFLIGHT transfers run at once; the rest wait in the
 * queue (bounded by --webhook-queue; the oldest waiting one is dropped).
 *
 * Handles: the curl timer and the tick timer live in struct notify; each
 * socket curl opens gets a struct sock with its own uv_poll, freed in the
 * poll's close callback. struct notify itself is freed only after the loop
 * ended (notify_free), so a database callback arriving after stop finds it
 * and sees `stopped`.
 */
#include "notify.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "fsutil.h"
#include "log.h"

#define NOTIFY_MAX_URLS 8
#define NOTIFY_MAX_INFLIGHT 8
#define NOTIFY_CLAIM_BATCH 64
#define NOTIFY_TICK_MS 1000
#define NOTIFY_NODE_SCAN_MS 10000
#define NOTIFY_PRUNE_MS 3600000
#define NOTIFY_MAX_BACKOFF_S 300.0
#define NOTIFY_SECRET_MAX 4096

struct delivery {
	struct delivery *next;
	struct notify *n;
	long long id; /* webhook_deliveries.id */
	char kind[32];
	char *url;
	char *secret_env; /* a pipeline target's key variable; NULL: the --webhook-secret-file key */
	char *body;
	size_t body_len;
	int attempts;
	uint64_t due_ms; /* uv_now time of the next attempt */
	CURL *easy;      /* non-NULL while in flight */
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
};

struct sock {
	uv_poll_t poll;
	struct notify *n;
	curl_socket_t fd;
};

struct notify {
	struct app *app;
	CURLM *multi;
	uv_timer_t curl_timer;
	uv_timer_t tick;
	int handles; /* open uv handles (timers + socket polls) */
	int active;  /* configured: timers run, events are claimed */
	int stopped;
	int claiming, claim_again;
	uint64_t last_scan_ms, last_prune_ms;
	char *urls[NOTIFY_MAX_URLS];
	int nurls;
	char *url_array; /* the URLs as a PostgreSQL text[] literal */
	char *kind_array;
	char secret[NOTIFY_SECRET_MAX + 1];
	size_t secret_len;
	struct delivery *queue; /* oldest first */
	int queued, inflight;
	uint64_t delivered, failed, retried, dropped;
	void (*on_closed)(void *arg);
	void *on_closed_arg;
};

static const char *const notify_kinds[] = {"run.failed",
					   "gate.failed",
					   "model.promoted",
					   "model.rolled_back",
					   "model.auto_rolled_back",
					   "node.unhealthy"};

/* ---- signing ---- */

int notify_sign(const char *secret, size_t secret_len, long long ts, const char *body, size_t body_len, char *out,
		size_t outlen)
{
	if (outlen < 7 + 64 + 1)
		return AT_ERANGE;
	char tsbuf[32];
	int tn = snprintf(tsbuf, sizeof tsbuf, "%lld.", ts);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	/* The signed text is "TIMESTAMP.BODY": a captured delivery replayed
	 * later carries an old timestamp the receiver refuses. */
	char *text = malloc((size_t)tn + body_len);
	if (!text)
		return AT_ENOMEM;
	memcpy(text, tsbuf, (size_t)tn);
	memcpy(text + tn, body, body_len);
	unsigned char *r = HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)text,
				(size_t)tn + body_len, mac, &maclen);
	free(text);
	if (!r || maclen != 32)
		return AT_EINTERNAL;
	memcpy(out, "sha256=", 7);
	at_hex_encode(out + 7, mac, 32);
	out[7 + 64] = 0;
	return 0;
}

/* ---- the delivery log ---- */

static void log_done(void *arg, int status, PGresult *res)
{
	(void)arg;
	if (status == AT_EDB)
		log_warn("webhooks: delivery log: %s", PQresultErrorMessage(res));
}

static void log_attempt(struct notify *n, const struct delivery *d, const char *state, long http_status,
			const char *error)
{
	if (n->stopped)
		return;
	char id[24], attempts[16], st[16];
	snprintf(id, sizeof id, "%lld", d->id);
	snprintf(attempts, sizeof attempts, "%d", d->attempts);
	snprintf(st, sizeof st, "%ld", http_status);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, id);
	db_param_text(&p, state);
	db_param_text(&p, attempts);
	db_param_text(&p, http_status > 0 ? st : NULL);
	db_param_text(&p, error);
	if (db_query(n->app->db,
		     "UPDATE webhook_deliveries SET state = $2, attempts = $3::int, last_status = $4::int, "
		     "last_error = left($5, 500), updated_at = now(), "
		     "delivered_at = CASE WHEN $2 = 'delivered' THEN now() END WHERE id = $1::bigint",
		     &p, log_done, NULL) < 0)
		log_warn("webhooks: cannot log delivery %lld", d->id);
}

/* ---- the queue ---- */

static void delivery_free(struct delivery *d)
{
	if (!d)
		return;
	curl_slist_free_all(d->headers);
	free(d->body);
	free(d->url);
	free(d->secret_env);
	free(d);
}

static void queue_unlink(struct notify *n, struct delivery *d)
{
	for (struct delivery **pp = &n->queue; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			n->queued--;
			return;
		}
}

static void queue_push(struct notify *n, struct delivery *d)
{
	/* Full: drop the oldest delivery not in flight, so fresh alerts win. */
	if (n->queued >= n->app->cfg.webhook_queue) {
		for (struct delivery *o = n->queue; o; o = o->next)
			if (!o->easy) {
				log_warn("webhooks: queue full (%d): dropping delivery %lld (%s)", n->queued, o->id,
					 o->kind);
				log_attempt(n, o, "dropped", 0, "dropped: queue full");
				n->dropped++;
				queue_unlink(n, o);
				delivery_free(o);
				break;
			}
	}
	struct delivery **pp = &n->queue;
	while (*pp)
		pp = &(*pp)->next;
	*pp = d;
	n->queued++;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb; /* the receiver's reply body is not used */
}

static int delivery_send(struct notify *n, struct delivery *d)
{
	long long ts = (long long)time(NULL);
	char sig[80], h[160];
	const char *key = n->secret;
	size_t key_len = n->secret_len;
	if (d->secret_env) {
		/* read at each attempt: an operator may set it and restart nothing */
		key = getenv(d->secret_env);
		key_len = key ? strlen(key) : 0;
	}
	if (!key_len)
		return AT_ENOTFOUND;
	int rc = notify_sign(key, key_len, ts, d->body, d->body_len, sig, sizeof sig);
	if (rc < 0)
		return rc;
	curl_slist_free_all(d->headers);
	d->headers = NULL;
	const char *lines[5] = {"Content-Type: application/json", NULL, NULL, NULL, NULL};
	char ev[64], del[48], tsh[48];
	snprintf(ev, sizeof ev, "X-Atelier-Event: %s", d->kind);
	snprintf(del, sizeof del, "X-Atelier-Delivery: %lld", d->id);
	snprintf(tsh, sizeof tsh, "X-Atelier-Timestamp: %lld", ts);
	snprintf(h, sizeof h, "X-Atelier-Signature: %s", sig);
	lines[1] = ev;
	lines[2] = del;
	lines[3] = tsh;
	lines[4] = h;
	for (int i = 0; i < 5; i++) {
		struct curl_slist *l = curl_slist_append(d->headers, lines[i]);
		if (!l)
			return AT_ENOMEM;
		d->headers = l;
	}
	CURL *e = curl_easy_init();
	if (!e)
		return AT_ENOMEM;
	curl_easy_setopt(e, CURLOPT_URL, d->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "atelierd-webhook/1");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(n->app->cfg.webhook_timeout * 1000));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(n->app->cfg.webhook_timeout * 1000));
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, d->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, d);
	d->errbuf[0] = 0;
	if (curl_multi_add_handle(n->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		return AT_EINTERNAL;
	}
	d->easy = e;
	d->attempts++;
	n->inflight++;
	return 0;
}

/* Start every due delivery while there is room in flight. */
static void queue_pump(struct notify *n)
{
	if (n->stopped)
		return;
	uint64_t now = uv_now(n->app->loop);
	for (struct delivery *d = n->queue, *next; d && n->inflight < NOTIFY_MAX_INFLIGHT; d = next) {
		next = d->next;
		if (d->easy || d->due_ms > now)
			continue;
		int rc = delivery_send(n, d);
		if (rc < 0) {
			char why[200];
			if (rc == AT_ENOTFOUND)
				snprintf(why, sizeof why, "no signing key: %s%s is not set in atelierd's environment",
					 d->secret_env ? "" : "--webhook-secret-file; ",
					 d->secret_env ? d->secret_env : "");
			else
				snprintf(why, sizeof why, "%s", at_strerror(rc));
			log_warn("webhooks: cannot send delivery %lld: %s", d->id, why);
			log_attempt(n, d, "failed", 0, why);
			n->failed++;
			queue_unlink(n, d);
			delivery_free(d);
		}
	}
}

static void delivery_finished(struct notify *n, struct delivery *d, CURLcode cc)
{
	long status = 0;
	curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(n->multi, d->easy);
	curl_easy_cleanup(d->easy);
	d->easy = NULL;
	n->inflight--;
	if (cc == CURLE_OK && status >= 200 && status < 300) {
		n->delivered++;
		log_attempt(n, d, "delivered", status, NULL);
		queue_unlink(n, d);
		delivery_free(d);
		return;
	}
	char why[CURL_ERROR_SIZE + 64];
	if (cc != CURLE_OK)
		snprintf(why, sizeof why, "%s", d->errbuf[0] ? d->errbuf : curl_easy_strerror(cc));
	else
		snprintf(why, sizeof why, "HTTP %ld", status);
	if (d->attempts >= n->app->cfg.webhook_attempts) {
		log_warn("webhooks: delivery %lld (%s) to %s failed after %d attempts: %s", d->id, d->kind, d->url,
			 d->attempts, why);
		n->failed++;
		log_attempt(n, d, "failed", status, why);
		queue_unlink(n, d);
		delivery_free(d);
		return;
	}
	double delay = n->app->cfg.webhook_backoff;
	for (int i = 1; i < d->attempts && delay < NOTIFY_MAX_BACKOFF_S; i++)
		delay *= 2;
	if (delay > NOTIFY_MAX_BACKOFF_S)
		delay = NOTIFY_MAX_BACKOFF_S;
	d->due_ms = uv_now(n->app->loop) + (uint64_t)(delay * 1000);
	n->retried++;
	log_attempt(n, d, "pending", status, why);
}

/* ---- libcurl on the loop (docs/examples/multi-uv.c) ---- */

static void check_multi_info(struct notify *n)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(n->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct delivery *d = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
		CURLcode cc = m->data.result;
		delivery_finished(n, d, cc);
	}
	queue_pump(n);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock *s = h->data;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(s->n->multi, s->fd, flags, &running);
	check_multi_info(s->n);
}

static void on_curl_timer(uv_timer_t *t)
{
	struct notify *n = t->data;
	int running;
	curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(n);
}

static void handle_closed(uv_handle_t *h)
{
	struct notify *n;
	if (h->type == UV_POLL) {
		struct sock *s = h->data;
		n = s->n;
		free(s);
	} else {
		n = h->data;
	}
	if (--n->handles == 0 && n->stopped && n->on_closed)
		n->on_closed(n->on_closed_arg);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int action, void *userp, void *socketp)
{
	(void)e;
	struct notify *n = userp;
	struct sock *s = socketp;
	if (action == CURL_POLL_REMOVE) {
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, handle_closed);
			curl_multi_assign(n->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof *s);
		if (!s)
			return -1;
		s->n = n;
		s->fd = fd;
		if (uv_poll_init_socket(n->app->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->poll.data = s;
		n->handles++;
		curl_multi_assign(n->multi, fd, s);
	}
	int ev = 0;
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		ev |= UV_READABLE;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, on_poll);
	return 0;
}

static int on_curl_timeout(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	struct notify *n = userp;
	if (n->stopped)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&n->curl_timer);
	else /* 0 means "now": run it from the loop, not from inside curl */
		uv_timer_start(&n->curl_timer, on_curl_timer, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
	return 0;
}

/* ---- claiming events ---- */

static void claim(struct notify *n);

static void on_claimed(void *arg, int status, PGresult *res)
{
	struct notify *n = arg;
	n->claiming = 0;
	if (n->stopped)
		return;
	if (status < 0) {
		if (status == AT_EDB)
			log_warn("webhooks: claim: %s", PQresultErrorMessage(res));
		return;
	}
	int rows = PQntuples(res);
	for (int i = 0; i < rows; i++) {
		struct delivery *d = calloc(1, sizeof *d);
		if (!d)
			break;
		d->n = n;
		d->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		snprintf(d->kind, sizeof d->kind, "%s", PQgetvalue(res, i, 2));
		d->url = strdup(PQgetvalue(res, i, 4));
		d->body = strdup(PQgetvalue(res, i, 3));
		if (!PQgetisnull(res, i, 5))
			d->secret_env = strdup(PQgetvalue(res, i, 5));
		if (!d->body || !d->url || (!PQgetisnull(res, i, 5) && !d->secret_env)) {
			delivery_free(d);
			continue;
		}
		d->body_len = strlen(d->body);
		d->due_ms = 0;
		queue_push(n, d);
	}
	queue_pump(n);
	/* a full batch: there may be more */
	if (rows == NOTIFY_CLAIM_BATCH || n->claim_again)
		claim(n);
}

static void claim(struct notify *n)
{
	if (n->stopped || !n->active)
		return;
	if (n->claiming) {
		n->claim_again = 1;
		return;
	}
	n->claim_again = 0;
	char lim[16];
	snprintf(lim, sizeof lim, "%d", NOTIFY_CLAIM_BATCH);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, lim);
	db_param_text(&p, n->url_array);
	db_param_text(&p, n->kind_array);
	/* Claim and log in one statement, so a claimed event always has its
	 * delivery rows (the body is built here, once, for every attempt).
	 * Targets: every --webhook-url (kinds $3), and the notify: list of the
	 * current version of the pipeline the event concerns — the run's, or
	 * for an event without a run, each pipeline of the event's model. */
	int rc = db_query(
		n->app->db,
		"WITH c AS (SELECT * FROM atelier_webhook_claim($1::int)), "
		"t AS (SELECT c.id, c.kind, u.url, NULL::text AS secret_env FROM c, unnest($2::text[]) u(url) "
		"WHERE c.kind = ANY($3::text[]) "
		"UNION ALL SELECT c.id, c.kind, x->>'url', x->>'secret_env' FROM c CROSS JOIN pipelines pl "
		"JOIN pipeline_versions pv ON pv.id = pl.current_version_id "
		"CROSS JOIN LATERAL jsonb_array_elements(coalesce(pv.parsed->'notify', '[]')) x "
		"WHERE x->'events' ? c.kind AND (pl.name = (SELECT r.pipeline FROM runs r "
		"WHERE r.id = (c.payload->>'run')::bigint) OR (c.payload->>'run' IS NULL "
		"AND pv.parsed->>'model' = c.payload->>'model'))), "
		"d AS (INSERT INTO webhook_deliveries (event_id, kind, url, secret_env, state) "
		"SELECT id, kind, url, secret_env, 'pending' FROM t ORDER BY id RETURNING id, event_id, url, secret_env) "
		"SELECT d.id, c.id, c.kind, json_build_object('id', c.id, 'kind', c.kind, 'created_at', "
		"c.created_at, 'payload', c.payload)::text, d.url, d.secret_env FROM d JOIN c ON c.id = d.event_id "
		"ORDER BY d.id",
		&p, on_claimed, n);
	if (rc == 0)
		n->claiming = 1;
}

static void on_webhook_notify(void *arg, const char *channel, const char *payload)
{
	(void)channel;
	(void)payload;
	claim(arg); /* channel NULL (reconnected) also means: look again */
}

/* Runs sql with one integer parameter when period ms have passed since *last;
 * a database that is down is simply tried again at the next period. */
static void every(struct notify *n, uint64_t now, uint64_t *last, uint64_t period, const char *sql, int arg)
{
	if (now - *last < period)
		return;
	*last = now;
	char s[16];
	snprintf(s, sizeof s, "%d", arg);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, s);
	if (db_query(n->app->db, sql, &p, log_done, NULL) < 0) {
		/* database down: the next period retries */
	}
}

static void on_tick(uv_timer_t *t)
{
	struct notify *n = t->data;
	uint64_t now = uv_now(n->app->loop);
	every(n, now, &n->last_scan_ms, NOTIFY_NODE_SCAN_MS, "SELECT atelier_webhook_scan_nodes($1::int)",
	      n->app->cfg.node_stale_s);
	every(n, now, &n->last_prune_ms, NOTIFY_PRUNE_MS, "SELECT atelier_webhook_prune($1::int)",
	      n->app->cfg.webhook_retention_days);
	claim(n);
	queue_pump(n);
}

/* ---- settings ---- */

/* A PostgreSQL array literal of strings ({"a","b"}), each quoted and escaped. */
static char *pg_array(const char *const *items, int count)
{
	struct at_buf b;
	at_buf_init(&b, 0);
	int rc = at_buf_addstr(&b, "{");
	for (int i = 0; rc == 0 && i < count; i++) {
		rc = at_buf_addstr(&b, i ? ",\"" : "\"");
		for (const char *c = items[i]; rc == 0 && *c; c++) {
			if (*c == '"' || *c == '\\')
				rc = at_buf_add(&b, "\\", 1);
			if (rc == 0)
				rc = at_buf_add(&b, c, 1);
		}
		if (rc == 0)
			rc = at_buf_addstr(&b, "\"");
	}
	if (rc == 0)
		rc = at_buf_add(&b, "}", 1);
	if (rc < 0) {
		at_buf_free(&b);
		return NULL;
	}
	return b.data; /* taken from the buffer */
}

static int read_secret(struct notify *n, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		log_error("webhooks: cannot read the secret file %s", path);
		return AT_EIO;
	}
	size_t len = fread(n->secret, 1, NOTIFY_SECRET_MAX + 1, f);
	fclose(f);
	while (len > 0 && (n->secret[len - 1] == '\n' || n->secret[len - 1] == '\r'))
		len--;
	if (len == 0 || len > NOTIFY_SECRET_MAX) {
		log_error("webhooks: the secret in %s must be 1..%d bytes", path, NOTIFY_SECRET_MAX);
		return AT_EINVAL;
	}
	n->secret[len] = 0;
	n->secret_len = len;
	return 0;
}

/* Split a comma-separated list into at most max strdup'd items. */
static int split_list(const char *s, char **items, int max, int *count)
{
	*count = 0;
	while (s && *s) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		while (len && s[0] == ' ') {
			s++;
			len--;
		}
		while (len && s[len - 1] == ' ')
			len--;
		if (len) {
			if (*count == max)
				return AT_ERANGE;
			if (!(items[*count] = strndup(s, len)))
				return AT_ENOMEM;
			(*count)++;
		}
		s = end ? end + 1 : NULL;
	}
	return 0;
}

static int configure(struct notify *n)
{
	const struct settings *c = &n->app->cfg;
	int rc = split_list(c->webhook_url, n->urls, NOTIFY_MAX_URLS, &n->nurls);
	if (rc < 0) {
		log_error("webhooks: at most %d URLs in --webhook-url", NOTIFY_MAX_URLS);
		return rc;
	}
	for (int i = 0; i < n->nurls; i++)
		if (strncmp(n->urls[i], "http://", 7) && strncmp(n->urls[i], "https://", 8)) {
			log_error("webhooks: %s: only http:// and https:// URLs", n->urls[i]);
			return AT_EINVAL;
		}
	if (!n->nurls && c->webhook_secret_file) {
		log_error("webhooks: --webhook-secret-file without --webhook-url");
		return AT_EINVAL;
	}
	if (!n->nurls) {
		/* no URL of our own: deliver pipelines' notify: targets only */
		n->url_array = strdup("{}");
		n->kind_array = strdup("{}");
		n->active = n->url_array && n->kind_array;
		return n->active ? 0 : AT_ENOMEM;
	}
	if (!c->webhook_secret_file) {
		log_error("webhooks: --webhook-url needs --webhook-secret-file (deliveries are always signed)");
		return AT_EINVAL;
	}
	if ((rc = read_secret(n, c->webhook_secret_file)) < 0)
		return rc;
	char *kinds[16];
	int nk = 0;
	if ((rc = split_list(c->webhook_events, kinds, 16, &nk)) < 0)
		return rc;
	for (int i = 0; i < nk && rc == 0; i++) {
		int ok = !strcmp(kinds[i], "test");
		for (size_t k = 0; k < sizeof notify_kinds / sizeof notify_kinds[0]; k++)
			ok |= !strcmp(kinds[i], notify_kinds[k]);
		if (!ok) {
			log_error("webhooks: unknown event kind \"%s\" in --webhook-events", kinds[i]);
			rc = AT_EINVAL;
		}
	}
	if (rc == 0) {
		n->kind_array = nk ? pg_array((const char *const *)kinds, nk)
				   : pg_array(notify_kinds, (int)(sizeof notify_kinds / sizeof notify_kinds[0]));
		n->url_array = pg_array((const char *const *)n->urls, n->nurls);
		if (!n->kind_array || !n->url_array)
			rc = AT_ENOMEM;
	}
	for (int i = 0; i < nk; i++)
		free(kinds[i]);
	if (rc == 0)
		n->active = 1;
	return rc;
}

/* ---- life ---- */

int notify_start(struct app *app, struct notify **out)
{
	struct notify *n = calloc(1, sizeof *n);
	if (!n)
		return AT_ENOMEM;
	n->app = app;
	int rc = configure(n);
	if (rc < 0) {
		notify_free(n);
		return rc;
	}
	n->multi = curl_multi_init();
	if (!n->multi) {
		notify_free(n);
		return AT_ENOMEM;
	}
	curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n);
	curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION, on_curl_timeout);
	curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n);
	uv_timer_init(app->loop, &n->curl_timer);
	uv_timer_init(app->loop, &n->tick);
	n->curl_timer.data = n;
	n->tick.data = n;
	n->handles = 2;
	if (n->active) {
		if (db_listen(app->db, "atelier_webhooks", on_webhook_notify, n) < 0)
			log_warn("webhooks: cannot LISTEN; polling every %d ms", NOTIFY_TICK_MS);
		uv_timer_start(&n->tick, on_tick, 0, NOTIFY_TICK_MS);
		log_info("webhooks: delivering to %d URL(s) and pipelines' notify: targets", n->nurls);
	}
	*out = n;
	return 0;
}

void notify_stop(struct notify *n, void (*on_closed)(void *arg), void *arg)
{
	n->stopped = 1;
	n->on_closed = on_closed;
	n->on_closed_arg = arg;
	/* Abort transfers in flight: removing each easy handle makes curl ask
	 * to remove its sockets, which closes their polls. */
	while (n->queue) {
		struct delivery *d = n->queue;
		n->queue = d->next;
		if (d->easy) {
			curl_multi_remove_handle(n->multi, d->easy);
			curl_easy_cleanup(d->easy);
		}
		delivery_free(d);
	}
	n->queued = n->inflight = 0;
	curl_multi_cleanup(n->multi);
	n->multi = NULL;
	uv_timer_stop(&n->tick);
	uv_timer_stop(&n->curl_timer);
	uv_close((uv_handle_t *)&n->tick, handle_closed);
	uv_close((uv_handle_t *)&n->curl_timer, handle_closed);
}

void notify_free(struct notify *n)
{
	if (!n)
		return;
	for (int i = 0; i < n->nurls; i++)
		free(n->urls[i]);
	free(n->url_array);
	free(n->kind_array);
	free(n);
}

int notify_metrics(const struct notify *n, struct at_buf *b)
{
	return at_buf_printf(
		b,
		"# HELP atelier_webhook_deliveries_total Webhook delivery attempts by outcome (delivered; failed: "
		"gave up; retried: an attempt failed and was rescheduled; dropped: the queue was full).\n"
		"# TYPE atelier_webhook_deliveries_total counter\n"
		"atelier_webhook_deliveries_total{outcome=\"delivered\"} %llu\n"
		"atelier_webhook_deliveries_total{outcome=\"failed\"} %llu\n"
		"atelier_webhook_deliveries_total{outcome=\"retried\"} %llu\n"
		"atelier_webhook_deliveries_total{outcome=\"dropped\"} %llu\n"
		"# HELP atelier_webhook_queue Webhook deliveries waiting or in flight in this atelierd.\n"
		"# TYPE atelier_webhook_queue gauge\natelier_webhook_queue %d\n"
		"# HELP atelier_webhook_in_flight Webhook deliveries being sent now.\n"
		"# TYPE atelier_webhook_in_flight gauge\natelier_webhook_in_flight %d\n",
		(unsigned long long)(n ? n->delivered : 0), (unsigned long long)(n ? n->failed : 0),
		(unsigned long long)(n ? n->retried : 0), (unsigned long long)(n ? n->dropped : 0), n ? n->queued : 0,
		n ? n->inflight : 0);
}

/* ---- GET /v1/webhooks/deliveries ---- */

static const char *const delivery_states[] = {"pending", "delivered", "failed", "dropped"};

static void get_deliveries(http_req_t *req)
{
	const char *state = http_req_query(req, "state");
	const char *kind = http_req_query(req, "kind");
	const char *before = http_req_query(req, "before");
	const char *limit = http_req_query(req, "limit");
	if (state) {
		int ok = 0;
		for (size_t i = 0; i < sizeof delivery_states / sizeof delivery_states[0]; i++)
			ok |= !strcmp(state, delivery_states[i]);
		if (!ok) {
			http_reply_err(req, AT_EINVAL, "state must be one of pending, delivered, failed, dropped",
				       json_pack("{ss,ss}", "field", "state", "value", state));
			return;
		}
	}
	if (kind) {
		int ok = !strcmp(kind, "test");
		for (size_t i = 0; i < sizeof notify_kinds / sizeof notify_kinds[0]; i++)
			ok |= !strcmp(kind, notify_kinds[i]);
		if (!ok) {
			http_reply_err(req, AT_EINVAL, "kind must be an event kind (docs/alerts.md)",
				       json_pack("{ss,ss}", "field", "kind", "value", kind));
			return;
		}
	}
	long long lim = 50;
	if (limit) {
		char *end;
		lim = strtoll(limit, &end, 10);
		if (*end || lim < 1 || lim > 500) {
			http_reply_err(req, AT_ERANGE, "limit must be 1..500", json_pack("{ss}", "field", "limit"));
			return;
		}
	}
	if (before && !api_positive_id(req, before, "before"))
		return;
	char lim_s[24];
	snprintf(lim_s, sizeof lim_s, "%lld", lim);
	struct db_params p;
	db_params_init(&p);
	db_param_text(&p, state);
	db_param_text(&p, kind);
	db_param_text(&p, before);
	db_param_text(&p, lim_s);
	api_reply_sql_json(
		req,
		"SELECT json_build_object('deliveries', coalesce(json_agg(json_build_object('id', d.id, 'event_id', "
		"d.event_id, 'kind', d.kind, 'url', d.url, 'state', d.state, 'attempts', d.attempts, 'last_status', "
		"d.last_status, 'last_error', d.last_error, 'created_at', d.created_at, 'updated_at', d.updated_at, "
		"'delivered_at', d.delivered_at, 'payload', e.payload) ORDER BY d.id DESC), '[]'))::text FROM "
		"(SELECT * FROM webhook_deliveries WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) "
		"AND ($3::bigint IS NULL OR id < $3::bigint) ORDER BY id DESC LIMIT $4::int) d "
		"LEFT JOIN webhook_events e ON e.id = d.event_id",
		&p, "no deliveries");
}

const struct http_route notify_routes[] = {
	{"GET", "/v1/webhooks/deliveries", get_deliveries, ROLE_OPERATOR,
	 "the webhook delivery log, newest first; filters: state, kind, before (id cursor), limit",
	 .op = "listWebhookDeliveries", .tag = "ops",
	 .params =
		 "{\"state\":{\"type\":\"string\",\"enum\":[\"pending\",\"delivered\",\"failed\",\"dropped\"]},"
		 "\"kind\":{\"type\":\"string\",\"enum\":[\"run.failed\",\"gate.failed\",\"model.promoted\","
		 "\"model.rolled_back\",\"model.auto_rolled_back\",\"node.unhealthy\",\"test\"]},"
		 "\"before\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"only deliveries with a smaller id\"},"
		 "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":500,\"default\":50}}",
	 .reply = HTTP_JSON(API_OBJECT("\"deliveries\":" API_ARRAY(API_OBJECT("\"id\":" API_INT ",\"event_id\":" API_NULL(
		 "integer") ",\"kind\":" API_STR ",\"url\":" API_STR
			    ",\"state\":{\"type\":\"string\",\"enum\":[\"pending\",\"delivered\",\"failed\",\"dropped\"]}"
			    ",\"attempts\":" API_INT
			    ",\"last_status\":" API_NULL("integer") ",\"last_error\":" API_NULL(
				    "string") ",\"created_at\":" API_TIME ",\"updated_at\":" API_TIME
					      ",\"delivered_at\":" API_NULL_TIME
					      ",\"payload\":" API_NULL("object")))))},
};
const size_t notify_nroutes = sizeof notify_routes / sizeof notify_routes[0];
