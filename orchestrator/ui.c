/*
 * ui.c — the operator's dashboard (GET /ui/...) and GET /v1/whoami, which the
 * dashboard asks to learn what the signed-in token may do.
 *
 * The files under ui/ (and Chart.js, copied by the Makefile from Debian's
 * libjs-chart.js into $(BUILD)/gen/ at build time, never committed) are pulled
 * into .rodata by the assembler (.incbin), like the node's drawing page
 * (serving/web.c): atelierd needs no install tree to serve its dashboard.
 *
 * The pages are public (they hold no data; every datum comes from the API with
 * the token the user types in, kept in sessionStorage). The replies carry a
 * strict Content-Security-Policy: scripts and styles only from this origin, no
 * inline script, no other origin at all. Each file has a strong ETag (FNV-1a
 * over its bytes, computed once) so a browser revalidates with a 304.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "ui.h"

#define EMBED(sym, file)                                    \
	__asm__(".section .rodata\n"                        \
		".balign 16\n"                              \
		".global " #sym "_start\n" #sym "_start:\n" \
		".incbin \"" file "\"\n"                    \
		".global " #sym "_end\n" #sym "_end:\n"     \
		".byte 0\n"                                 \
		".previous\n");                             \
	extern const char sym##_start[], sym##_end[]

#ifndef ATELIER_UI_CHART_JS /* the Makefile names its copy under $(BUILD)/gen */
#define ATELIER_UI_CHART_JS "build/gen/ui/chart.js"
#endif

EMBED(atelier_ui_index, "ui/index.html");
EMBED(atelier_ui_app, "ui/app.js");
EMBED(atelier_ui_style, "ui/style.css");
EMBED(atelier_ui_icon, "ui/icon.svg");
EMBED(atelier_ui_chart, ATELIER_UI_CHART_JS);

struct asset {
	const char *name; /* the path after /ui/ */
	const char *type;
	const char *start, *end;
	char etag[24];
};

static struct asset assets[] = {
	{"", "text/html; charset=utf-8", atelier_ui_index_start, atelier_ui_index_end, ""},
	{"app.js", "text/javascript; charset=utf-8", atelier_ui_app_start, atelier_ui_app_end, ""},
	{"style.css", "text/css; charset=utf-8", atelier_ui_style_start, atelier_ui_style_end, ""},
	{"icon.svg", "image/svg+xml", atelier_ui_icon_start, atelier_ui_icon_end, ""},
	{"chart.js", "text/javascript; charset=utf-8", atelier_ui_chart_start, atelier_ui_chart_end, ""},
};
#define NASSETS (sizeof assets / sizeof assets[0])

/* No inline script or style anywhere (the pages set styles through the CSSOM,
 * which style-src does not govern); images are this origin's or blobs the
 * script fetched with the bearer token. */
#define UI_CSP                                                                                  \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " \
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static void etag_once(struct asset *a)
{
	if (a->etag[0])
		return;
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = a->start; p < a->end; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	snprintf(a->etag, sizeof a->etag, "\"%016llx\"", (unsigned long long)h);
}

static void get_ui(http_req_t *req)
{
	const char *name = http_req_param(req, "file");
	if (!name)
		name = "";
	for (size_t i = 0; i < NASSETS; i++) {
		struct asset *a = &assets[i];
		if (strcmp(name, a->name) != 0)
			continue;
		etag_once(a);
		http_req_add_header(req, "ETag", a->etag);
		/* revalidate every time: a new atelierd must not run yesterday's script */
		http_req_add_header(req, "Cache-Control", "no-cache");
		http_req_add_header(req, "Content-Security-Policy", UI_CSP);
		http_req_add_header(req, "X-Content-Type-Options", "nosniff");
		http_req_add_header(req, "Referrer-Policy", "no-referrer");
		size_t n = 0;
		const char *inm = http_req_header(req, "if-none-match", &n);
		if (inm && n == strlen(a->etag) && memcmp(inm, a->etag, n) == 0) {
			http_reply_empty(req, 304);
			return;
		}
		http_reply_bytes(req, 200, a->type, a->start, (size_t)(a->end - a->start));
		return;
	}
	http_reply_err(req, AT_ENOTFOUND, "no such dashboard file under /ui/", json_pack("{ss}", "file", name));
}

/* Who the bearer is: the dashboard offers only what this role may do (the
 * server still checks every write). */
static void get_whoami(http_req_t *req)
{
	const char *node = http_req_token_node(req);
	const char *name = http_req_principal(req);
	http_reply_json(req, 200,
			json_pack("{ss,s:s?,s:s?,sI}", "role", http_role_name(http_req_role(req)), "name",
				  name && name[0] ? name : NULL, "node", node && node[0] ? node : NULL, "token_id",
				  (json_int_t)http_req_token_id(req)));
}

const struct http_route ui_routes[] = {
	/* the server drops a trailing slash, so /ui/ arrives here too; the page
	 * names its files by absolute path, so either address works */
	{"GET", "/ui", get_ui, ROLE_PUBLIC, "the operator dashboard (sign in with an API token)",
	 .op = "getDashboardPage", .tag = "ops", .reply = "{\"text/html\":" HTTP_TEXT "}",
	 .replies = "{\"304\":{\"description\":\"If-None-Match named the current ETag\"}}"},
	{"GET", "/ui/{file*}", get_ui, ROLE_PUBLIC, "the dashboard's script, style sheet, chart library and icon",
	 .op = "getDashboard", .tag = "ops",
	 .params = "{\"file\":{\"type\":\"string\",\"enum\":[\"app.js\",\"style.css\",\"chart.js\",\"icon.svg\"]}}",
	 .reply = "{\"text/javascript\":" HTTP_TEXT ",\"text/css\":" HTTP_TEXT ",\"image/svg+xml\":" HTTP_TEXT "}",
	 .replies = "{\"304\":{\"description\":\"If-None-Match named the current ETag\"}}"},
	{"GET", "/v1/whoami", get_whoami, ROLE_ANY, "the bearer token's role and name", .op = "whoami", .tag = "tokens",
	 .reply = HTTP_JSON("{\"type\":\"object\",\"required\":[\"role\",\"token_id\"],\"properties\":{\"role\":{"
			    "\"type\":\"string\",\"enum\":[\"operator\",\"node\",\"viewer\"]},\"name\":" API_NULL(
				    "string") ",\"node\":" API_NULL("string") ",\"token_id\":" API_INT "}}")},
};
const size_t ui_nroutes = sizeof ui_routes / sizeof ui_routes[0];
