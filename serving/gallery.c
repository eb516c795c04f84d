/*
 * gallery.c — the node's gallery (see gallery.h).
 *
 * Threads: the feed thread writes the index (under idx_lock, a rwlock the
 * loop reads under); the threadpool fills the image cache; the loop reads
 * both. The cache has its own mutex, taken after idx_lock when both are
 * held, never before. Every text that came from a visitor (title, name) is
 * HTML-escaped where a page prints it.
 */
#include "gallery.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgthread.h"
#include "http_client.h"
#include "image.h"
#include "log.h"
#include "puller.h"
#include "serve.h"
#include "works.h"

#define FEED_PAGE 1000
#define CALL_TIMEOUT 15L
#define NBUCKETS 4096
#define IMAGE_FETCH_CAP (WORKS_IMAGE_MAX + 4096)

enum kind { K_THUMB, K_PAINTING, K_SKETCH, K_N };
static const char *const kind_names[K_N] = {"thumb", "painting", "sketch"};

struct entry {
	int64_t id;
	char *title, *name, *style_key, *created_at;
	int64_t model_version; /* 0: unknown */
};

struct item {
	int64_t id;
	int kind;
	uint8_t *data;
	size_t len;
	char type[16];
	struct item *hnext;       /* bucket chain */
	struct item *prev, *next; /* LRU list: head most recent */
};

struct gallery {
	struct serve_app *app;
	struct bgthread bg;
	struct http_client client;
	pthread_rwlock_t idx_lock;
	struct entry *v; /* newest (highest id) first */
	size_t n, cap;
	int64_t rev;
	int synced;
	pthread_mutex_t cache_mu;
	struct item *buckets[NBUCKETS];
	struct item *head, *tail;
	size_t bytes, items;
	uint64_t hits, misses, evicted, dropped, not_modified, fills_failed, polls_ok, polls_failed;
};

/* ---- the index ---- */

static void entry_clear(struct entry *e)
{
	free(e->title);
	free(e->name);
	free(e->style_key);
	free(e->created_at);
}

/* Position of id (or where it would go) in v, sorted by id descending. */
static size_t find(const struct gallery *g, int64_t id, int *found)
{
	size_t lo = 0, hi = g->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (g->v[mid].id == id) {
			*found = 1;
			return mid;
		}
		if (g->v[mid].id > id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

static char *dup_or_null(json_t *v)
{
	const char *s = json_string_value(v);
	return s ? strdup(s) : NULL;
}

static void cache_drop(struct gallery *g, int64_t id);

/* One work of the feed (the feed thread, idx_lock held for writing). */
static void apply(struct gallery *g, json_t *w)
{
	int64_t id = json_integer_value(json_object_get(w, "id"));
	const char *status = json_string_value(json_object_get(w, "status"));
	if (id <= 0 || !status)
		return;
	int found;
	size_t at = find(g, id, &found);
	if (strcmp(status, "published") != 0) {
		if (found) {
			entry_clear(&g->v[at]);
			memmove(g->v + at, g->v + at + 1, (g->n - at - 1) * sizeof *g->v);
			g->n--;
		}
		cache_drop(g, id);
		return;
	}
	struct entry e = {.id = id};
	e.title = dup_or_null(json_object_get(w, "title"));
	e.name = dup_or_null(json_object_get(w, "name"));
	e.style_key = dup_or_null(json_object_get(w, "style_key"));
	e.created_at = dup_or_null(json_object_get(w, "created_at"));
	e.model_version = json_integer_value(json_object_get(w, "model_version"));
	if (!e.style_key || !e.created_at) {
		entry_clear(&e);
		return;
	}
	if (found) {
		entry_clear(&g->v[at]);
		g->v[at] = e;
		return;
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 256;
		struct entry *nv = realloc(g->v, cap * sizeof *nv);
		if (!nv) {
			entry_clear(&e);
			return;
		}
		g->v = nv;
		g->cap = cap;
	}
	memmove(g->v + at + 1, g->v + at, (g->n - at) * sizeof *g->v);
	g->v[at] = e;
	g->n++;
}

/* Reads the feed from g->rev until it has no more (the feed thread). */
static int poll_feed(struct gallery *g)
{
	for (;;) {
		char path[96];
		snprintf(path, sizeof path, "/v1/works/changes?after=%lld&limit=%d", (long long)g->rev, FEED_PAGE);
		struct http_client_resp r;
		http_client_resp_init(&r, 32 << 20);
		int rc = http_client_call(&g->client,
					  &(struct http_client_req){.path = path, .timeout_s = CALL_TIMEOUT}, &r);
		json_t *o =
			rc == 0 && r.status == 200 ? json_loadb((const char *)r.body.data, r.body.len, 0, NULL) : NULL;
		if (!o && rc == 0)
			log_debug("gallery: feed answered %ld", r.status);
		http_client_resp_free(&r);
		json_t *works = json_object_get(o, "works");
		if (!json_is_array(works)) {
			json_decref(o);
			return rc == AT_ECANCELLED ? rc : AT_EUNAVAILABLE;
		}
		size_t i;
		json_t *w;
		pthread_rwlock_wrlock(&g->idx_lock);
		json_array_foreach(works, i, w) apply(g, w);
		g->rev = json_integer_value(json_object_get(o, "rev"));
		g->synced = 1;
		pthread_rwlock_unlock(&g->idx_lock);
		int more = json_is_true(json_object_get(o, "more"));
		json_decref(o);
		if (!more)
			return 0;
	}
}

static void *feed_run(void *arg)
{
	struct gallery *g = arg;
	double backoff = 0;
	while (!bgthread_stopping(&g->bg)) {
		int rc = poll_feed(g);
		pthread_mutex_lock(&g->bg.mu);
		if (rc == 0) {
			g->polls_ok++;
			backoff = 0;
		} else {
			g->polls_failed++;
			backoff = backoff <= 0 ? g->app->cfg.gallery_poll : backoff * 2;
			if (backoff > g->app->cfg.retry_max)
				backoff = g->app->cfg.retry_max;
		}
		double wait = rc == 0 ? g->app->cfg.gallery_poll : backoff;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		double until = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + wait;
		ts.tv_sec = (time_t)until;
		ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
		while (!bgthread_stopping(&g->bg) && pthread_cond_timedwait(&g->bg.cv, &g->bg.mu, &ts) == 0)
			;
		pthread_mutex_unlock(&g->bg.mu);
	}
	return NULL;
}

/* ---- the image cache ---- */

static size_t bucket(int64_t id, int kind) { return ((uint64_t)id * 3 + (uint64_t)kind) % NBUCKETS; }

static void lru_unlink(struct gallery *g, struct item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		g->head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		g->tail = it->prev;
	it->prev = it->next = NULL;
}

static void lru_front(struct gallery *g, struct item *it)
{
	it->next = g->head;
	it->prev = NULL;
	if (g->head)
		g->head->prev = it;
	g->head = it;
	if (!g->tail)
		g->tail = it;
}

static void item_remove(struct gallery *g, struct item *it)
{
	struct item **pp = &g->buckets[bucket(it->id, it->kind)];
	while (*pp && *pp != it)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = it->hnext;
	lru_unlink(g, it);
	g->bytes -= it->len;
	g->items--;
	free(it->data);
	free(it);
}

static struct item *lookup(struct gallery *g, int64_t id, int kind)
{
	for (struct item *it = g->buckets[bucket(id, kind)]; it; it = it->hnext)
		if (it->id == id && it->kind == kind)
			return it;
	return NULL;
}

static void cache_drop(struct gallery *g, int64_t id)
{
	pthread_mutex_lock(&g->cache_mu);
	for (int k = 0; k < K_N; k++) {
		struct item *it = lookup(g, id, k);
		if (it) {
			item_remove(g, it);
			g->dropped++;
		}
	}
	pthread_mutex_unlock(&g->cache_mu);
}

/* Takes data. Evicts least recently used items past the bound. */
static void cache_put(struct gallery *g, int64_t id, int kind, uint8_t *data, size_t len, const char *type)
{
	struct item *it = calloc(1, sizeof *it);
	if (!it) {
		free(data);
		return;
	}
	it->id = id;
	it->kind = kind;
	it->data = data;
	it->len = len;
	snprintf(it->type, sizeof it->type, "%s", type);
	pthread_mutex_lock(&g->cache_mu);
	struct item *old = lookup(g, id, kind);
	if (old)
		item_remove(g, old);
	size_t b = bucket(id, kind);
	it->hnext = g->buckets[b];
	g->buckets[b] = it;
	lru_front(g, it);
	g->bytes += len;
	g->items++;
	while (g->bytes > g->app->cfg.gallery_cache && g->tail && g->tail != it) {
		item_remove(g, g->tail);
		g->evicted++;
	}
	pthread_mutex_unlock(&g->cache_mu);
}

static int published(struct gallery *g, int64_t id)
{
	int found;
	pthread_rwlock_rdlock(&g->idx_lock);
	find(g, id, &found);
	pthread_rwlock_unlock(&g->idx_lock);
	return found;
}

/* ---- images ---- */

static void etag_of(char *buf, size_t cap, struct serve_app *app, int64_t id, int kind)
{
	snprintf(buf, cap, "\"w%lld-%s%d\"", (long long)id, kind_names[kind],
		 kind == K_THUMB ? app->cfg.gallery_thumb : 0);
}

static int etag_matches(http_req_t *req, const char *etag)
{
	size_t len = 0;
	const char *inm = http_req_header(req, "if-none-match", &len);
	size_t el = strlen(etag);
	if (!inm)
		return 0;
	/* a list of tags, or "*"; a weak W/ prefix compares equal here */
	for (size_t i = 0; i + el <= len; i++)
		if (memcmp(inm + i, etag, el) == 0)
			return 1;
	return len == 1 && inm[0] == '*';
}

static void send_image(http_req_t *req, struct serve_app *app, int64_t id, int kind, const uint8_t *data, size_t len,
		       const char *type)
{
	char etag[64];
	etag_of(etag, sizeof etag, app, id, kind);
	http_req_add_header(req, "ETag", etag);
	/* a hidden work must leave browsers soon as well: a short max-age, then a
	 * revalidation that costs a 304 */
	http_req_add_header(req, "Cache-Control", "public, max-age=10");
	http_reply_bytes(req, 200, type, data, len);
}

struct fill {
	uv_work_t work;
	struct serve_app *app;
	http_req_t *req;
	int64_t id;
	int kind;
	int rc;
	long status;
	uint8_t *data;
	size_t len;
	char type[16];
};

/* The threadpool: the image from atelierd, and the thumbnail made of it. */
static void fill_work(uv_work_t *w)
{
	struct fill *f = w->data;
	struct serve_app *app = f->app;
	char path[96];
	snprintf(path, sizeof path, "/v1/works/%lld/%s", (long long)f->id, f->kind == K_SKETCH ? "sketch" : "painting");
	struct http_client c;
	puller_client(app, &c, "atelier-serve");
	struct http_client_resp r;
	http_client_resp_init(&r, IMAGE_FETCH_CAP);
	f->rc = http_client_call(&c, &(struct http_client_req){.path = path, .timeout_s = CALL_TIMEOUT}, &r);
	f->status = r.status;
	if (f->rc == 0 && r.status == 200 && r.body.len > 0) {
		int fmt = image_sniff((const uint8_t *)r.body.data, r.body.len);
		if (fmt < 0) {
			f->rc = AT_EUNSUPPORTED;
		} else if (f->kind != K_THUMB) {
			f->data = (uint8_t *)at_buf_steal(&r.body, &f->len);
			snprintf(f->type, sizeof f->type, "%s", fmt == IMAGE_PNG ? "image/png" : "image/jpeg");
		} else {
			int side = app->cfg.gallery_thumb;
			uint8_t *pix = NULL;
			f->rc = image_decode_rgb((const uint8_t *)r.body.data, r.body.len, side, &pix);
			if (f->rc == 0)
				f->rc = image_encode_jpeg(pix, side, side, 82, &f->data, &f->len);
			free(pix);
			snprintf(f->type, sizeof f->type, "image/jpeg");
		}
	} else if (f->rc == 0) {
		f->rc = r.status == 404 ? AT_ENOTFOUND : AT_EUNAVAILABLE;
	}
	http_client_resp_free(&r);
}

static void fill_done(uv_work_t *w, int status)
{
	struct fill *f = w->data;
	struct gallery *g = f->app->gallery;
	if (status < 0) {
		http_reply_err(f->req, AT_EUNAVAILABLE, "server shutting down", NULL);
	} else if (f->rc < 0 || !f->data) {
		pthread_mutex_lock(&g->cache_mu);
		g->fills_failed++;
		pthread_mutex_unlock(&g->cache_mu);
		if (f->rc == AT_ENOTFOUND)
			http_reply_err(f->req, AT_ENOTFOUND, "no such work in the gallery",
				       json_pack("{sI}", "id", (json_int_t)f->id));
		else
			http_reply_err(f->req, AT_EUNAVAILABLE, "the work's image is not available now",
				       json_pack("{sI}", "upstream_status", (json_int_t)f->status));
	} else if (!published(g, f->id)) {
		/* hidden while we fetched it: neither cached nor shown */
		http_reply_err(f->req, AT_ENOTFOUND, "no such work in the gallery",
			       json_pack("{sI}", "id", (json_int_t)f->id));
	} else {
		send_image(f->req, f->app, f->id, f->kind, f->data, f->len, f->type);
		cache_put(g, f->id, f->kind, f->data, f->len, f->type);
		f->data = NULL;
	}
	free(f->data);
	free(f);
}

static void image(http_req_t *req, int kind)
{
	struct serve_app *app = http_req_app(req);
	struct gallery *g = app->gallery;
	int64_t id;
	if (http_req_param_id(req, "id", &id) < 0)
		return;
	if (!g || !published(g, id)) {
		http_reply_err(req, AT_ENOTFOUND, "no such work in the gallery",
			       json_pack("{sI}", "id", (json_int_t)id));
		return;
	}
	char etag[64];
	etag_of(etag, sizeof etag, app, id, kind);
	pthread_mutex_lock(&g->cache_mu);
	struct item *it = lookup(g, id, kind);
	if (it && etag_matches(req, etag)) {
		g->not_modified++;
		pthread_mutex_unlock(&g->cache_mu);
		http_req_add_header(req, "ETag", etag);
		http_req_add_header(req, "Cache-Control", "public, max-age=10");
		http_reply_empty(req, 304);
		return;
	}
	if (it) {
		g->hits++;
		lru_unlink(g, it);
		lru_front(g, it);
		send_image(req, app, id, kind, it->data, it->len, it->type);
		pthread_mutex_unlock(&g->cache_mu);
		return;
	}
	g->misses++;
	pthread_mutex_unlock(&g->cache_mu);
	/* not cached: the tag is still ours (an image never changes), so a
	 * browser's copy stays good without a fetch */
	if (etag_matches(req, etag)) {
		http_req_add_header(req, "ETag", etag);
		http_reply_empty(req, 304);
		return;
	}
	struct fill *f = calloc(1, sizeof *f);
	if (!f) {
		http_reply_err(req, AT_ENOMEM, "out of memory", NULL);
		return;
	}
	f->app = app;
	f->req = req;
	f->id = id;
	f->kind = kind;
	f->work.data = f;
	if (uv_queue_work(app->loop, &f->work, fill_work, fill_done) != 0) {
		free(f);
		http_reply_err(req, AT_EUNAVAILABLE, "cannot schedule the image", NULL);
	}
}

void gallery_get_thumb(http_req_t *req) { image(req, K_THUMB); }

void gallery_get_image(http_req_t *req)
{
	const char *p = http_req_path(req);
	size_t n = strlen(p);
	image(req, n > 7 && strcmp(p + n - 7, "/sketch") == 0 ? K_SKETCH : K_PAINTING);
}

/* ---- pages ---- */

static int esc(struct at_buf *b, const char *s)
{
	int rc = 0;
	for (; s && *s && rc == 0; s++) {
		switch (*s) {
		case '&': rc = at_buf_addstr(b, "&amp;"); break;
		case '<': rc = at_buf_addstr(b, "&lt;"); break;
		case '>': rc = at_buf_addstr(b, "&gt;"); break;
		case '"': rc = at_buf_addstr(b, "&quot;"); break;
		case '\'': rc = at_buf_addstr(b, "&#39;"); break;
		default: rc = at_buf_add(b, s, 1); break;
		}
	}
	return rc;
}

/* A style key in a URL's query: percent-encoded but for digits, letters,
 * '.' and '@' (its '+' must not become a space, and a key is never trusted
 * to be only what atelierd writes). */
static int url_key(struct at_buf *b, const char *key)
{
	int rc = 0;
	for (; *key && rc == 0; key++) {
		unsigned char c = (unsigned char)*key;
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '@')
			rc = at_buf_add(b, key, 1);
		else
			rc = at_buf_printf(b, "%%%02X", c);
	}
	return rc;
}

static int page_head(struct at_buf *b, const char *title, const char *klass)
{
	int rc = at_buf_addstr(b, "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
				  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
	if (rc == 0)
		rc = esc(b, title);
	if (rc == 0)
		rc = at_buf_printf(
			b,
			"</title>\n<link rel=\"stylesheet\" href=\"/gallery.css\">\n"
			"<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n</head>\n<body class=\"%s\">\n"
			"<header>\n<h1><a href=\"/gallery\"><img src=\"/favicon.svg\" alt=\"\" width=\"28\" height=\"28\"> "
			"Atelier gallery</a></h1>\n<nav><a class=\"button primary\" href=\"/\">Draw your own</a></nav>\n"
			"</header>\n",
			klass);
	return rc;
}

static void reply_page(http_req_t *req, int rc, struct at_buf *b)
{
	http_req_add_header(req, "Cache-Control", "no-cache");
	http_req_add_header(
		req, "Content-Security-Policy",
		"default-src 'none'; img-src 'self'; style-src 'self'; base-uri 'none'; form-action 'self'");
	http_reply_buf(req, rc, b, "text/html; charset=utf-8");
}

#define WALL_MAX 200

/* The page of works at or after `before` (0: the newest) in a style (NULL:
 * all), under the read lock: indexes into v, and the id past the page (0: none). */
static size_t select_page(struct gallery *g, const char *style, int64_t before, size_t want, size_t *out, int64_t *next)
{
	int found;
	size_t i = before > 0 ? find(g, before, &found) : 0;
	if (before > 0 && found)
		i++;
	size_t k = 0;
	*next = 0;
	for (; i < g->n; i++) {
		if (style && strcmp(g->v[i].style_key, style) != 0)
			continue;
		if (k == want) {
			*next = out[k - 1] < g->n ? g->v[out[k - 1]].id : 0;
			break;
		}
		out[k++] = i;
	}
	return k;
}

/* ?style= and ?before=, checked; replies 400 and returns < 0 on bad input */
static int wall_query(http_req_t *req, const char **style, int64_t *before)
{
	*style = http_req_query(req, "style");
	if (*style && !**style)
		*style = NULL;
	if (*style && works_style_key_valid(*style) < 0) {
		http_reply_err(req, AT_EINVAL, "style is a style number or key (\"7\", \"7+9@0.50\", \"reference\")",
			       json_pack("{ss}", "field", "style"));
		return AT_EINVAL;
	}
	const char *b = http_req_query(req, "before");
	*before = 0;
	if (b && http_parse_id(b, before) < 0) {
		http_reply_err(req, AT_EINVAL, "before is a work id", json_pack("{ss}", "field", "before"));
		return AT_EINVAL;
	}
	return 0;
}

static int style_label(struct at_buf *b, const char *key)
{
	if (strcmp(key, "reference") == 0)
		return at_buf_addstr(b, "a picture's style");
	int rc = at_buf_addstr(b, "style ");
	return rc == 0 ? esc(b, key) : rc;
}

void gallery_get_wall(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	struct gallery *g = app->gallery;
	const char *style;
	int64_t before;
	if (wall_query(req, &style, &before) < 0)
		return;
	size_t want = (size_t)app->cfg.gallery_page, idx[WALL_MAX];
	if (want > WALL_MAX)
		want = WALL_MAX;
	struct at_buf b;
	at_buf_init(&b, 0);
	int rc = page_head(&b, "Gallery — Atelier", "gallery");
	if (rc == 0)
		rc = at_buf_addstr(&b, "<main>\n<form class=\"filter\" action=\"/gallery\" method=\"get\">"
				       "<label>Style <input name=\"style\" inputmode=\"numeric\" size=\"10\" value=\"");
	if (rc == 0)
		rc = esc(&b, style ? style : "");
	if (rc == 0)
		rc = at_buf_addstr(&b, "\"></label> <button type=\"submit\">Show</button>");
	if (rc == 0 && style)
		rc = at_buf_addstr(&b, " <a href=\"/gallery\">All styles</a>");
	if (rc == 0)
		rc = at_buf_addstr(&b, "</form>\n");
	if (!g) {
		if (rc == 0)
			rc = at_buf_addstr(&b,
					   "<p class=\"empty\">This node has no gallery (it has no atelierd).</p>\n");
		goto end;
	}
	pthread_rwlock_rdlock(&g->idx_lock);
	int64_t next;
	size_t k = select_page(g, style, before, want, idx, &next);
	if (rc == 0 && k == 0)
		rc = at_buf_addstr(&b,
				   g->synced
					   ? "<p class=\"empty\">No works here yet. <a href=\"/\">Draw one</a> and "
					     "publish it.</p>\n"
					   : "<p class=\"empty\">The gallery is loading; try again in a moment.</p>\n");
	if (rc == 0 && k > 0)
		rc = at_buf_addstr(&b, "<ul class=\"wall\">\n");
	for (size_t j = 0; rc == 0 && j < k; j++) {
		const struct entry *e = &g->v[idx[j]];
		rc = at_buf_printf(&b,
				   "<li><a href=\"/gallery/works/%lld\"><img src=\"/gallery/thumbs/%lld.jpg\" "
				   "width=\"%d\" height=\"%d\" loading=\"lazy\" alt=\"",
				   (long long)e->id, (long long)e->id, app->cfg.gallery_thumb, app->cfg.gallery_thumb);
		if (rc == 0)
			rc = esc(&b, e->title ? e->title : "an untitled work");
		if (rc == 0)
			rc = at_buf_addstr(&b, "\"><span class=\"cap\"><span class=\"t\">");
		if (rc == 0)
			rc = esc(&b, e->title ? e->title : "Untitled");
		if (rc == 0)
			rc = at_buf_addstr(&b, "</span><span class=\"m\">");
		if (rc == 0 && e->name) {
			rc = esc(&b, e->name);
			if (rc == 0)
				rc = at_buf_addstr(&b, " · ");
		}
		if (rc == 0)
			rc = style_label(&b, e->style_key);
		if (rc == 0)
			rc = at_buf_addstr(&b, "</span></span></a></li>\n");
	}
	pthread_rwlock_unlock(&g->idx_lock);
	if (rc == 0 && k > 0)
		rc = at_buf_addstr(&b, "</ul>\n");
	if (rc == 0 && (before || next))
		rc = at_buf_addstr(&b, "<nav class=\"pager\">");
	if (rc == 0 && before) {
		rc = at_buf_addstr(&b, "<a href=\"/gallery");
		if (rc == 0 && style) {
			rc = at_buf_addstr(&b, "?style=");
			if (rc == 0)
				rc = url_key(&b, style);
		}
		if (rc == 0)
			rc = at_buf_addstr(&b, "\">← Newest</a>");
	}
	if (rc == 0 && next) {
		rc = at_buf_printf(&b, "<a rel=\"next\" href=\"/gallery?before=%lld", (long long)next);
		if (rc == 0 && style) {
			rc = at_buf_addstr(&b, "&amp;style=");
			if (rc == 0)
				rc = url_key(&b, style);
		}
		if (rc == 0)
			rc = at_buf_addstr(&b, "\">Older →</a>");
	}
	if (rc == 0 && (before || next))
		rc = at_buf_addstr(&b, "</nav>\n");
end:
	if (rc == 0)
		rc = at_buf_addstr(&b, "</main>\n</body>\n</html>\n");
	reply_page(req, rc, &b);
}

/* "/?style=N" (a mix: its first style, with style2 and alpha for a page
 * that knows them); a picture's style has no number to take. */
static int use_style_link(struct at_buf *b, const char *key)
{
	if (strcmp(key, "reference") == 0)
		return at_buf_addstr(b, "<span class=\"note\">made with a picture's style</span>");
	char s1[24] = "", s2[24] = "", a[16] = "";
	if (sscanf(key, "%23[0-9]+%23[0-9]@%15[0-9.]", s1, s2, a) == 3)
		return at_buf_printf(b,
				     "<a class=\"button primary\" href=\"/?style=%s&amp;style2=%s&amp;alpha=%s\">"
				     "Use this style</a>",
				     s1, s2, a);
	if (sscanf(key, "%23[0-9]", s1) == 1 && strlen(s1) == strlen(key))
		return at_buf_printf(b, "<a class=\"button primary\" href=\"/?style=%s\">Use this style</a>", s1);
	return 0;
}

void gallery_get_work(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	struct gallery *g = app->gallery;
	int64_t id;
	if (http_req_param_id(req, "id", &id) < 0)
		return;
	if (!g) {
		http_reply_err(req, AT_ENOTFOUND, "no such work in the gallery",
			       json_pack("{sI}", "id", (json_int_t)id));
		return;
	}
	pthread_rwlock_rdlock(&g->idx_lock);
	int found;
	size_t at = find(g, id, &found);
	if (!found) {
		pthread_rwlock_unlock(&g->idx_lock);
		http_reply_err(req, AT_ENOTFOUND, "no such work in the gallery",
			       json_pack("{sI}", "id", (json_int_t)id));
		return;
	}
	const struct entry *e = &g->v[at];
	struct at_buf b;
	at_buf_init(&b, 0);
	char title[200];
	snprintf(title, sizeof title, "%s — Atelier gallery", e->title ? e->title : "Untitled");
	int rc = page_head(&b, title, "gallery work");
	if (rc == 0)
		rc = at_buf_addstr(&b, "<main>\n<article>\n<h2>");
	if (rc == 0)
		rc = esc(&b, e->title ? e->title : "Untitled");
	if (rc == 0)
		rc = at_buf_addstr(&b, "</h2>\n<p class=\"meta\">");
	if (rc == 0 && e->name) {
		rc = at_buf_addstr(&b, "by <span class=\"name\">");
		if (rc == 0)
			rc = esc(&b, e->name);
		if (rc == 0)
			rc = at_buf_addstr(&b, "</span> · ");
	}
	if (rc == 0)
		rc = at_buf_addstr(&b, "<time datetime=\"");
	if (rc == 0)
		rc = esc(&b, e->created_at);
	if (rc == 0)
		rc = at_buf_printf(&b, "\">%.10s</time> · ", e->created_at);
	if (rc == 0)
		rc = style_label(&b, e->style_key);
	if (rc == 0)
		rc = e->model_version > 0 ? at_buf_printf(&b, " · model v%lld", (long long)e->model_version)
					  : at_buf_addstr(&b, " · model version unknown");
	if (rc == 0)
		rc = at_buf_printf(&b,
				   "</p>\n<div class=\"pair\">\n<figure><img src=\"/gallery/works/%lld/sketch\" "
				   "alt=\"the sketch\"><figcaption>Sketch</figcaption></figure>\n"
				   "<figure><img src=\"/gallery/works/%lld/painting\" alt=\"the painting\">"
				   "<figcaption>Painting</figcaption></figure>\n</div>\n<p class=\"actions\">",
				   (long long)id, (long long)id);
	if (rc == 0)
		rc = use_style_link(&b, e->style_key);
	if (rc == 0) {
		rc = at_buf_addstr(&b, " <a class=\"button\" href=\"/gallery?style=");
		if (rc == 0)
			rc = url_key(&b, e->style_key);
		if (rc == 0)
			rc = at_buf_addstr(&b, "\">More in this style</a> <a class=\"button\" href=\"/gallery\">"
					       "All works</a></p>\n</article>\n</main>\n</body>\n</html>\n");
	}
	pthread_rwlock_unlock(&g->idx_lock);
	reply_page(req, rc, &b);
}

void gallery_api_list(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	struct gallery *g = app->gallery;
	const char *style;
	int64_t before;
	if (wall_query(req, &style, &before) < 0)
		return;
	const char *lim = http_req_query(req, "limit");
	int64_t want = app->cfg.gallery_page;
	if (lim && (http_parse_id(lim, &want) < 0 || want > WALL_MAX)) {
		http_reply_err(req, AT_EINVAL, "limit is 1..200", json_pack("{ss}", "field", "limit"));
		return;
	}
	json_t *works = json_array();
	int64_t next = 0;
	size_t total = 0;
	int synced = 0;
	if (g) {
		size_t idx[WALL_MAX];
		pthread_rwlock_rdlock(&g->idx_lock);
		size_t k = select_page(g, style, before, (size_t)want, idx, &next);
		for (size_t j = 0; j < k; j++) {
			const struct entry *e = &g->v[idx[j]];
			json_t *o = json_pack("{sI,ss,ss,ss}", "id", (json_int_t)e->id, "style_key", e->style_key,
					      "created_at", e->created_at, "thumb", "");
			char t[64];
			snprintf(t, sizeof t, "/gallery/thumbs/%lld.jpg", (long long)e->id);
			json_object_set_new(o, "thumb", json_string(t));
			json_object_set_new(o, "title", e->title ? json_string(e->title) : json_null());
			json_object_set_new(o, "name", e->name ? json_string(e->name) : json_null());
			json_object_set_new(o, "model_version",
					    e->model_version > 0 ? json_integer(e->model_version) : json_null());
			json_array_append_new(works, o);
		}
		total = g->n;
		synced = g->synced;
		pthread_rwlock_unlock(&g->idx_lock);
	}
	http_reply_json(req, 200,
			json_pack("{so,so,sI,sb}", "works", works, "next", next ? json_integer(next) : json_null(),
				  "total", (json_int_t)total, "synced", synced));
}

/* ---- life ---- */

int gallery_start(struct serve_app *app, struct gallery **out)
{
	struct gallery *g = calloc(1, sizeof *g);
	if (!g)
		return AT_ENOMEM;
	g->app = app;
	pthread_rwlock_init(&g->idx_lock, NULL);
	pthread_mutex_init(&g->cache_mu, NULL);
	http_client_init(&g->client, app->cfg.atelierd, app->cfg.token, &g->bg.stop, NULL);
	snprintf(g->client.user_agent, sizeof g->client.user_agent, "atelier-serve/%s", app->name);
	if (bgthread_start(&g->bg, feed_run, g) < 0) {
		pthread_rwlock_destroy(&g->idx_lock);
		pthread_mutex_destroy(&g->cache_mu);
		free(g);
		return AT_ENOMEM;
	}
	*out = g;
	return 0;
}

void gallery_stop(struct gallery *g)
{
	if (g)
		bgthread_stop(&g->bg);
}

void gallery_free(struct gallery *g)
{
	if (!g)
		return;
	bgthread_join(&g->bg);
	for (size_t i = 0; i < g->n; i++)
		entry_clear(&g->v[i]);
	free(g->v);
	while (g->head)
		item_remove(g, g->head);
	pthread_rwlock_destroy(&g->idx_lock);
	pthread_mutex_destroy(&g->cache_mu);
	free(g);
}

int gallery_metrics(struct gallery *g, struct at_buf *b)
{
	if (!g)
		return 0;
	pthread_rwlock_rdlock(&g->idx_lock);
	size_t n = g->n;
	long long rev = (long long)g->rev;
	pthread_rwlock_unlock(&g->idx_lock);
	pthread_mutex_lock(&g->bg.mu);
	unsigned long long ok = g->polls_ok, failed = g->polls_failed;
	pthread_mutex_unlock(&g->bg.mu);
	pthread_mutex_lock(&g->cache_mu);
	int rc = at_buf_printf(
		b,
		"# HELP atelier_serve_gallery_works Published works in this node's gallery index.\n"
		"# TYPE atelier_serve_gallery_works gauge\natelier_serve_gallery_works %zu\n"
		"# HELP atelier_serve_gallery_rev The last change of atelierd's works feed this node applied.\n"
		"# TYPE atelier_serve_gallery_rev gauge\natelier_serve_gallery_rev %lld\n"
		"# HELP atelier_serve_gallery_feed_polls_total Reads of the works feed, by outcome.\n"
		"# TYPE atelier_serve_gallery_feed_polls_total counter\n"
		"atelier_serve_gallery_feed_polls_total{outcome=\"ok\"} %llu\n"
		"atelier_serve_gallery_feed_polls_total{outcome=\"failed\"} %llu\n"
		"# HELP atelier_serve_gallery_cache_bytes Bytes of images and thumbnails in the cache.\n"
		"# TYPE atelier_serve_gallery_cache_bytes gauge\natelier_serve_gallery_cache_bytes %zu\n"
		"# HELP atelier_serve_gallery_cache_items Images and thumbnails in the cache.\n"
		"# TYPE atelier_serve_gallery_cache_items gauge\natelier_serve_gallery_cache_items %zu\n"
		"# HELP atelier_serve_gallery_cache_total Image requests and cache events, by outcome.\n"
		"# TYPE atelier_serve_gallery_cache_total counter\n"
		"atelier_serve_gallery_cache_total{outcome=\"hit\"} %llu\n"
		"atelier_serve_gallery_cache_total{outcome=\"miss\"} %llu\n"
		"atelier_serve_gallery_cache_total{outcome=\"not_modified\"} %llu\n"
		"atelier_serve_gallery_cache_total{outcome=\"evicted\"} %llu\n"
		"atelier_serve_gallery_cache_total{outcome=\"dropped\"} %llu\n"
		"atelier_serve_gallery_cache_total{outcome=\"fill_failed\"} %llu\n",
		n, rev, ok, failed, g->bytes, g->items, (unsigned long long)g->hits, (unsigned long long)g->misses,
		(unsigned long long)g->not_modified, (unsigned long long)g->evicted, (unsigned long long)g->dropped,
		(unsigned long long)g->fills_failed);
	pthread_mutex_unlock(&g->cache_mu);
	return rc;
}
