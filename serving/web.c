/*
 * web.c — static assets of the drawing page (see web.h).
 *
 * The files are pulled into .rodata by the assembler (.incbin), so the
 * binary is self-contained: a node needs no install tree to serve its page.
 * Paths are relative to the compiler's working folder, the repository root
 * (the Makefile runs there); the Makefile makes web.o depend on the files in web/.
 */
#include "web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define EMBED(sym, file)                                    \
	__asm__(".section .rodata\n"                        \
		".balign 16\n"                              \
		".global " #sym "_start\n" #sym "_start:\n" \
		".incbin \"" file "\"\n"                    \
		".global " #sym "_end\n" #sym "_end:\n"     \
		".byte 0\n"                                 \
		".previous\n");                             \
	extern const char sym##_start[], sym##_end[]

EMBED(atelier_web_index, "web/index.html");
EMBED(atelier_web_app, "web/app.js");
EMBED(atelier_web_style, "web/style.css");
EMBED(atelier_web_favicon, "web/favicon.svg");
EMBED(atelier_web_gallery_css, "web/gallery.css");

struct asset {
	const char *path; /* request path */
	const char *file; /* name under --web-dir */
	const char *type;
	const char *start, *end;
	char *loaded; /* from --web-dir, malloc'd */
	size_t loaded_len;
};

static struct asset assets[] = {
	{"/", "index.html", "text/html; charset=utf-8", atelier_web_index_start, atelier_web_index_end, NULL, 0},
	{"/app.js", "app.js", "text/javascript; charset=utf-8", atelier_web_app_start, atelier_web_app_end, NULL, 0},
	{"/style.css", "style.css", "text/css; charset=utf-8", atelier_web_style_start, atelier_web_style_end, NULL, 0},
	{"/favicon.svg", "favicon.svg", "image/svg+xml", atelier_web_favicon_start, atelier_web_favicon_end, NULL, 0},
	{"/gallery.css", "gallery.css", "text/css; charset=utf-8", atelier_web_gallery_css_start,
	 atelier_web_gallery_css_end, NULL, 0},
};
#define NASSETS (sizeof assets / sizeof assets[0])

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return AT_ENOTFOUND;
	int rc = 0;
	char *buf = NULL;
	if (fseek(f, 0, SEEK_END) != 0) {
		rc = AT_EIO;
		goto out;
	}
	long n = ftell(f);
	if (n < 0 || n > (8 << 20) || fseek(f, 0, SEEK_SET) != 0) {
		rc = AT_EIO;
		goto out;
	}
	buf = malloc((size_t)n + 1);
	if (!buf) {
		rc = AT_ENOMEM;
		goto out;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		rc = AT_EIO;
		goto out;
	}
	*out = buf;
	*len = (size_t)n;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return rc;
}

int web_init(const char *dir)
{
	if (!dir)
		return 0;
	for (size_t i = 0; i < NASSETS; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, assets[i].file);
		int rc = read_file(path, &assets[i].loaded, &assets[i].loaded_len);
		if (rc < 0) {
			log_error("web: cannot read %s: %s", path, at_strerror(rc));
			web_free();
			return rc;
		}
	}
	return 0;
}

void web_free(void)
{
	for (size_t i = 0; i < NASSETS; i++) {
		free(assets[i].loaded);
		assets[i].loaded = NULL;
	}
}

void web_get(http_req_t *req)
{
	const char *path = http_req_path(req);
	for (size_t i = 0; i < NASSETS; i++) {
		const struct asset *a = &assets[i];
		if (strcmp(path, a->path) != 0)
			continue;
		http_req_add_header(req, "Cache-Control", "no-cache");
		/* the page loads nothing from elsewhere; say so to the browser */
		http_req_add_header(req, "Content-Security-Policy",
				    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'");
		if (a->loaded)
			http_reply_bytes(req, 200, a->type, a->loaded, a->loaded_len);
		else
			http_reply_bytes(req, 200, a->type, a->start, (size_t)(a->end - a->start));
		return;
	}
	http_reply_err(req, AT_ENOTFOUND, "no such page", NULL);
}
