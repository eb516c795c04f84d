/*
 * routes.c — atelier-serve's HTTP route table (the one list of its
 * endpoints; `atelier-serve routes` and /api/openapi.json come from it) and
 * the small handlers that belong to no subsystem: health, readiness,
 * metrics, model info, local reload.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contribute.h"
#include "gallery.h"
#include "limit.h"
#include "log.h"
#include "mine.h"
#include "model_slot.h"
#include "publish.h"
#include "puller.h"
#include "serve.h"
#include "spool.h"
#include "stats.h"
#include "stylize.h"
#include "uplink.h"
#include "web.h"

static void get_healthz(http_req_t *req) { http_reply_json(req, 200, json_pack("{ss}", "status", "alive")); }

static json_t *model_json(struct serve_app *app)
{
	struct model_slot_info mi;
	model_slot_info(app->slot, &mi);
	return json_pack("{ss,ss,so,so,ss,ss,sI,sI,so}", "model", app->cfg.model, "channel", app->cfg.channel, "loaded",
			 json_boolean(mi.loaded), "version",
			 mi.loaded && mi.version > 0 ? json_integer(mi.version) : json_null(), "sha256", mi.sha256,
			 "source", mi.source, "swaps", (json_int_t)mi.swaps, "swap_failures",
			 (json_int_t)mi.swap_failures, "last_error",
			 mi.last_error[0] ? json_string(mi.last_error) : json_null());
}

static void get_readyz(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	struct model_slot_info mi;
	model_slot_info(app->slot, &mi);
	if (!mi.loaded) {
		http_reply_err(req, AT_ENOTREADY, "no model loaded yet", model_json(app));
		return;
	}
	json_t *o = model_json(app);
	json_object_set_new(o, "status", json_string("ready"));
	http_reply_json(req, 200, o);
}

static void get_info(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	json_t *o = model_json(app);
	int files = 0;
	if (app->spool)
		spool_depth(app->spool, &files, NULL);
	json_object_set_new(o, "node", json_string(app->name));
	json_object_set_new(o, "contribute", json_boolean(app->cfg.atelierd && app->spool));
	json_object_set_new(o, "spool_depth", json_integer(files));
	json_object_set_new(o, "output_size", json_integer(app->cfg.output_size));
	http_reply_json(req, 200, o);
}

static void get_metrics(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	struct model_slot_info mi;
	model_slot_info(app->slot, &mi);
	struct at_buf b;
	at_buf_init(&b, 0);
	int rc = http_server_metrics(app->http, &b);
	if (rc == 0)
		rc = stats_metrics(app->stats, &b);
	if (rc == 0)
		rc = at_buf_printf(
			&b,
			"# HELP atelier_serve_model_loaded 1 while a model is loaded.\n"
			"# TYPE atelier_serve_model_loaded gauge\natelier_serve_model_loaded %d\n"
			"# HELP atelier_serve_model_version Registry version in service (0: local file or none).\n"
			"# TYPE atelier_serve_model_version gauge\natelier_serve_model_version %lld\n"
			"# HELP atelier_serve_model_info The model in service.\n"
			"# TYPE atelier_serve_model_info gauge\n"
			"atelier_serve_model_info{sha256=\"%s\",channel=\"%s\"} 1\n"
			"# HELP atelier_serve_swaps_total Models swapped in (the first load included).\n"
			"# TYPE atelier_serve_swaps_total counter\natelier_serve_swaps_total %llu\n"
			"# HELP atelier_serve_swap_failures_total Downloads, verifications or loads that failed.\n"
			"# TYPE atelier_serve_swap_failures_total counter\natelier_serve_swap_failures_total %llu\n"
			"# HELP atelier_serve_last_swap_timestamp_seconds Time of the last swap (unix).\n"
			"# TYPE atelier_serve_last_swap_timestamp_seconds gauge\n"
			"atelier_serve_last_swap_timestamp_seconds %llu\n"
			"# HELP atelier_serve_stylize_queue Stylize requests admitted and not yet answered.\n"
			"# TYPE atelier_serve_stylize_queue gauge\natelier_serve_stylize_queue %d\n"
			"# HELP process_start_time_seconds Start time (unix).\n"
			"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %llu\n",
			mi.loaded, (long long)(mi.loaded ? mi.version : 0), mi.sha256, app->cfg.channel,
			(unsigned long long)mi.swaps, (unsigned long long)mi.swap_failures,
			(unsigned long long)mi.last_swap_unix, stylize_queue_depth(app->sq),
			(unsigned long long)app->started_at);
	if (rc == 0)
		rc = stylize_metrics(app->sq, &b);
	if (rc == 0)
		rc = spool_metrics(app->spool, &b);
	if (rc == 0)
		rc = puller_metrics(app->puller, &b);
	if (rc == 0)
		rc = uplink_metrics(app->uplink, &b);
	if (rc == 0)
		rc = limit_metrics(app, &b);
	if (rc == 0)
		rc = publish_metrics(app->publish, &b);
	if (rc == 0)
		rc = gallery_metrics(app->gallery, &b);
	http_reply_buf(req, rc, &b, "text/plain; version=0.0.4");
}

static void get_openapi(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	http_reply_json(req, 200, http_server_openapi(app->http, "atelier-serve", serve_tags, serve_ntags));
}

static void reload_done(void *arg, int rc, const char *msg)
{
	http_req_t *req = arg;
	struct serve_app *app = http_req_app(req);
	if (rc < 0) {
		http_reply_err(req, AT_EINTERNAL, "reload failed; the previous model keeps serving",
			       json_pack("{ss}", "reason", msg));
		return;
	}
	http_reply_json(req, 200, model_json(app));
}

static void post_reload(http_req_t *req)
{
	struct serve_app *app = http_req_app(req);
	if (!app->cfg.model_file) {
		http_reply_err(req, AT_ECONFLICT, "no --model-file to reload", NULL);
		return;
	}
	int rc = serve_reload(app, reload_done, req);
	if (rc == AT_ECONFLICT)
		http_reply_err(req, AT_ECONFLICT, "a reload is already running", NULL);
	else if (rc < 0)
		http_reply_err(req, rc, NULL, NULL);
}

/* ---- the route table ---- */

/* JSON schemas of the replies, for the OpenAPI document (what model_json and
 * the handlers above build). */
#define S_MODEL                                                                                                        \
	"{\"type\":\"object\",\"required\":[\"model\",\"channel\",\"loaded\"],\"properties\":{"                        \
	"\"model\":{\"type\":\"string\"},\"channel\":{\"type\":\"string\"},\"loaded\":{\"type\":\"boolean\"},"         \
	"\"version\":{\"type\":\"integer\",\"nullable\":true,\"description\":\"registry version; null: local file\"}," \
	"\"sha256\":{\"type\":\"string\"},\"source\":{\"type\":\"string\"},\"swaps\":{\"type\":\"integer\"},"          \
	"\"swap_failures\":{\"type\":\"integer\"},\"last_error\":{\"type\":\"string\",\"nullable\":true}"
#define P_RECEIPT                                                                                          \
	"{\"X-Atelier-Receipt\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z0-9_-]{43}$\",\"description\":" \
	"\"the receipt POST /api/contribute returned\"}}"
#define S_IMAGE "{\"type\":\"string\",\"format\":\"binary\",\"description\":\"PNG or JPEG\"}"

#define S_MINE                                                                                             \
	"{\"type\":\"object\",\"required\":[\"kind\",\"status\"],\"properties\":{\"kind\":{\"type\":"      \
	"\"string\",\"enum\":[\"work\"]},\"id\":{\"type\":\"integer\"},\"status\":{\"type\":\"string\","   \
	"\"enum\":[\"queued\",\"published\",\"hidden\",\"withdrawn\"],\"description\":\"queued: still in " \
	"this node's spool\"},\"withdrawn\":{\"type\":\"boolean\"},\"created_at\":{\"type\":\"string\"},"  \
	"\"changed_at\":{\"type\":\"string\"},\"title\":{\"type\":\"string\",\"nullable\":true},\"name\":" \
	"{\"type\":\"string\",\"nullable\":true},\"style\":{\"type\":\"object\"},\"style_key\":{\"type\":" \
	"\"string\"},\"model_version\":{\"type\":\"integer\",\"nullable\":true}}}"
#define P_WORK "{\"id\":{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":1}}"
#define S_IMAGES_OUT "{\"image/png\":" HTTP_BINARY ",\"image/jpeg\":" HTTP_BINARY "}"
#define R_304 "{\"304\":{\"description\":\"If-None-Match named the current ETag\"}}"

const struct http_tag serve_tags[] = {
	{"page", "the drawing page, embedded in the binary"},
	{"ops", "health, readiness, metrics, this document"},
	{"stylize", "sketch to painting"},
	{"contribute", "sketches given back to training, spooled for atelierd"},
	{"admin", "the node's operator (--admin-token)"},
	{"gallery", "published works: publish, the wall, a work's page, images, a receipt's work"},
};
const size_t serve_ntags = sizeof serve_tags / sizeof serve_tags[0];

const struct http_route serve_routes[] = {
	{"GET", "/", web_get, ROLE_PUBLIC, "the drawing page", .op = "getPage", .tag = "page",
	 .reply = "{\"text/html\":" HTTP_TEXT "}"},
	{"GET", "/app.js", web_get, ROLE_PUBLIC, "the drawing page's script", .op = "getPageScript", .tag = "page",
	 .reply = "{\"text/javascript\":" HTTP_TEXT "}"},
	{"GET", "/style.css", web_get, ROLE_PUBLIC, "the drawing page's style sheet", .op = "getPageStyle",
	 .tag = "page", .reply = "{\"text/css\":" HTTP_TEXT "}"},
	{"GET", "/favicon.svg", web_get, ROLE_PUBLIC, "the drawing page's icon", .op = "getPageIcon", .tag = "page",
	 .reply = "{\"image/svg+xml\":" HTTP_TEXT "}"},
	{"GET", "/healthz", get_healthz, ROLE_PUBLIC, "liveness: 200 while the process runs", .op = "getHealth",
	 .tag = "ops",
	 .reply = HTTP_JSON(
		 "{\"type\":\"object\",\"properties\":{\"status\":{\"type\":\"string\",\"enum\":[\"alive\"]}}}")},
	{"GET", "/readyz", get_readyz, ROLE_PUBLIC, "readiness: 200 only while a model is loaded", .op = "getReadiness",
	 .tag = "ops", .reply = HTTP_JSON(S_MODEL ",\"status\":{\"type\":\"string\",\"enum\":[\"ready\"]}}}"),
	 .replies = "{\"503\":{\"description\":\"no model loaded yet (the error's detail is the model state)\","
		    "\"content\":" HTTP_JSON("{\"$ref\":\"#/components/schemas/Error\"}") "}}"},
	{"GET", "/metrics", get_metrics, ROLE_PUBLIC, "Prometheus metrics", .op = "getMetrics", .tag = "ops",
	 .reply = "{\"text/plain\":" HTTP_TEXT "}"},
	{"GET", "/api/info", get_info, ROLE_PUBLIC, "the model in service, swap counters, spool depth", .op = "getInfo",
	 .tag = "ops",
	 .reply = HTTP_JSON(S_MODEL ",\"node\":{\"type\":\"string\"},\"contribute\":{\"type\":\"boolean\"},"
				    "\"spool_depth\":{\"type\":\"integer\"},\"output_size\":{\"type\":\"integer\"}}}")},
	{"GET", "/api/openapi.json", get_openapi, ROLE_PUBLIC, "this API as an OpenAPI document", .op = "getOpenapi",
	 .tag = "ops", .reply = HTTP_JSON("{\"type\":\"object\"}")},
	{"POST", "/api/stylize", stylize_post, ROLE_PUBLIC,
	 "multipart contentImage (PNG/JPEG) + style int | styleImage [+ style2 | styleImage2, alpha] -> JPEG",
	 .op = "stylize", .tag = "stylize",
	 .body = "{\"multipart/form-data\":{\"type\":\"object\",\"required\":[\"contentImage\"],\"properties\":{"
		 "\"contentImage\":" S_IMAGE
		 ",\"style\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":4294967295,\"description\":"
		 "\"a style number (default 0); not with styleImage\"},\"styleImage\":" S_IMAGE
		 ",\"style2\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":4294967295},\"styleImage2\":" S_IMAGE
		 ",\"alpha\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1,\"description\":"
		 "\"the mix of the two styles, with style2 or styleImage2 (default 0.5)\"}}}}",
	 .reply = "{\"image/jpeg\":" HTTP_BINARY "}"},
	{"POST", "/api/contribute", contribute_post, ROLE_PUBLIC,
	 "multipart image + consent=true [+ contributor]: queued for atelierd (202)", .op = "contribute",
	 .tag = "contribute",
	 .body = "{\"multipart/form-data\":{\"type\":\"object\",\"required\":[\"image\",\"consent\"],\"properties\":{"
		 "\"image\":" S_IMAGE ",\"consent\":{\"type\":\"string\",\"enum\":[\"true\",\"on\",\"1\",\"yes\"],"
		 "\"description\":\"any case\"},"
		 "\"contributor\":{\"type\":\"string\",\"maxLength\":128}}}}",
	 .status = 202,
	 .reply = HTTP_JSON(
		 "{\"type\":\"object\",\"properties\":{\"status\":{\"type\":\"string\",\"enum\":[\"queued\"]},"
		 "\"spool_depth\":{\"type\":\"integer\"},\"receipt\":{\"type\":\"string\",\"pattern\":"
		 "\"^[A-Za-z0-9_-]{43}$\",\"description\":\"shown once: withdraws this sketch (X-Atelier-Receipt "
		 "on /api/sketches/mine)\"}}}")},
	{"GET", "/api/sketches/mine", mine_get, ROLE_PUBLIC,
	 "the status of the sketch your receipt names (X-Atelier-Receipt): pending in this node's spool, or "
	 "atelierd's accepted/rejected/deleted",
	 .op = "getMySketch", .tag = "contribute", .params = P_RECEIPT,
	 .reply = HTTP_JSON("{\"type\":\"object\",\"properties\":{\"kind\":{\"type\":\"string\",\"enum\":"
			    "[\"sketch\"]},\"id\":{\"type\":\"integer\"},\"status\":{\"type\":\"string\","
			    "\"enum\":[\"pending\",\"accepted\",\"rejected\",\"deleted\"]},\"created_at\":{"
			    "\"type\":\"string\",\"format\":\"date-time\"},\"deleted_at\":{\"type\":\"string\","
			    "\"format\":\"date-time\",\"nullable\":true},\"spooled\":{\"type\":\"boolean\"}}}")},
	{"DELETE", "/api/sketches/mine", mine_delete, ROLE_PUBLIC,
	 "withdraw the sketch your receipt names (X-Atelier-Receipt): from the spool, or from atelierd (pixels "
	 "removed, kept out of future datasets); a wrong receipt is 404 and deletes nothing",
	 .op = "withdrawMySketch", .tag = "contribute", .params = P_RECEIPT,
	 .reply = HTTP_JSON("{\"type\":\"object\",\"properties\":{\"kind\":{\"type\":\"string\",\"enum\":"
			    "[\"sketch\"]},\"id\":{\"type\":\"integer\"},\"status\":{\"type\":\"string\","
			    "\"enum\":[\"deleted\"]},\"withdrawn\":{\"type\":\"boolean\"},\"spooled\":{\"type\":"
			    "\"boolean\",\"description\":\"true: removed from this node's spool before delivery\"}}}")},
	{"GET", "/gallery.css", web_get, ROLE_PUBLIC, "the gallery's style sheet", .op = "getGalleryStyle",
	 .tag = "gallery", .reply = "{\"text/css\":" HTTP_TEXT "}"},
	{"POST", "/api/publish", publish_post, ROLE_PUBLIC,
	 "multipart sketch + painting + style [+ style2, alpha | style_reference] + consent_display=true [+ title, "
	 "name, model_version]: queued for atelierd, answered with the work's receipt (202)",
	 .op = "publish", .tag = "gallery",
	 .body = "{\"multipart/form-data\":{\"type\":\"object\",\"required\":[\"sketch\",\"painting\","
		 "\"consent_display\"],\"properties\":{\"sketch\":" S_IMAGE ",\"painting\":" S_IMAGE
		 ",\"style\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":4294967295},"
		 "\"style2\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":4294967295},"
		 "\"alpha\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
		 "\"style_reference\":{\"type\":\"string\",\"description\":\"true: the style came from a picture\"},"
		 "\"consent_display\":{\"type\":\"string\",\"enum\":[\"true\",\"on\",\"1\",\"yes\"],"
		 "\"description\":\"consent to show the work in the public gallery (any case)\"},"
		 "\"title\":{\"type\":\"string\",\"maxLength\":120},\"name\":{\"type\":\"string\","
		 "\"maxLength\":64},\"model_version\":{\"type\":\"integer\",\"minimum\":1}}}}",
	 .status = 202,
	 .reply = HTTP_JSON("{\"type\":\"object\",\"required\":[\"receipt\"],\"properties\":{\"status\":{\"type\":"
			    "\"string\",\"enum\":[\"queued\"]},\"receipt\":{\"type\":\"string\",\"pattern\":"
			    "\"^[A-Za-z0-9_-]{43}$\",\"description\":\"shown once; present it as X-Atelier-Receipt\"},"
			    "\"spool_depth\":{\"type\":\"integer\"}}}")},
	{"GET", "/api/works/mine", publish_get_mine, ROLE_PUBLIC,
	 "the work the receipt in header X-Atelier-Receipt names (404: none)", .op = "getMyWork", .tag = "gallery",
	 .reply = HTTP_JSON(S_MINE)},
	{"DELETE", "/api/works/mine", publish_delete_mine, ROLE_PUBLIC,
	 "withdraw the work the receipt in header X-Atelier-Receipt names (404: none, nothing changes)",
	 .op = "withdrawMyWork", .tag = "gallery", .reply = HTTP_JSON(S_MINE)},
	{"GET", "/api/gallery", gallery_api_list, ROLE_PUBLIC,
	 "published works, newest first, as JSON (?style key, ?before id, ?limit)", .op = "listGallery",
	 .tag = "gallery",
	 .params = "{\"style\":{\"type\":\"string\"},\"before\":{\"type\":\"integer\"},\"limit\":{"
		   "\"type\":\"integer\",\"minimum\":1,\"maximum\":200}}",
	 .reply = HTTP_JSON("{\"type\":\"object\",\"properties\":{\"works\":{\"type\":\"array\",\"items\":{\"type\":"
			    "\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"title\":{\"type\":\"string\","
			    "\"nullable\":true},\"name\":{\"type\":\"string\",\"nullable\":true},\"style_key\":{"
			    "\"type\":\"string\"},\"model_version\":{\"type\":\"integer\",\"nullable\":true},"
			    "\"created_at\":{\"type\":\"string\"},\"thumb\":{\"type\":\"string\"}}}},\"next\":{"
			    "\"type\":\"integer\",\"nullable\":true},\"total\":{\"type\":\"integer\"},\"synced\":{"
			    "\"type\":\"boolean\"}}}")},
	{"GET", "/gallery", gallery_get_wall, ROLE_PUBLIC, "the gallery wall, newest first (?style key, ?before id)",
	 .op = "getGallery", .tag = "gallery",
	 .params = "{\"style\":{\"type\":\"string\"},\"before\":{\"type\":\"integer\"}}",
	 .reply = "{\"text/html\":" HTTP_TEXT "}"},
	{"GET", "/gallery/thumbs/{id}.jpg", gallery_get_thumb, ROLE_PUBLIC,
	 "a work's thumbnail (made once, cached; ETag, 304 on If-None-Match)", .op = "getGalleryThumb",
	 .tag = "gallery", .params = P_WORK, .reply = "{\"image/jpeg\":" HTTP_BINARY "}", .replies = R_304},
	{"GET", "/gallery/works/{id}/sketch", gallery_get_image, ROLE_PUBLIC, "a work's sketch as published",
	 .op = "getGallerySketch", .tag = "gallery", .params = P_WORK, .reply = S_IMAGES_OUT, .replies = R_304},
	{"GET", "/gallery/works/{id}/painting", gallery_get_image, ROLE_PUBLIC, "a work's painting as published",
	 .op = "getGalleryPainting", .tag = "gallery", .params = P_WORK, .reply = S_IMAGES_OUT, .replies = R_304},
	{"GET", "/gallery/works/{id}", gallery_get_work, ROLE_PUBLIC,
	 "a work's page: sketch beside painting, model version, date, \"use this style\"", .op = "getGalleryWork",
	 .tag = "gallery", .params = P_WORK, .reply = "{\"text/html\":" HTTP_TEXT "}"},
	{"POST", "/admin/reload", post_reload, ROLE_OPERATOR, "reload --model-file and swap it in (admin token)",
	 .op = "reload", .tag = "admin", .reply = HTTP_JSON(S_MODEL "}}")},
};
const size_t serve_nroutes = sizeof serve_routes / sizeof serve_routes[0];
