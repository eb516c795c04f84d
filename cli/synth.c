/*
 * synth.c — `atelier synth [--count N] [--seed S] [--size PX] [--out DIR]`:
 * a deterministic, unpaired synthetic sketch/painting set (lib/synth: N
 * hand-like sketches and N paintings of the same object classes, drawn from
 * separate streams), uploaded through the API like any other data —
 * paintings to /v1/paintings, sketches to /v1/sketches (source "synth"). With
 * --out DIR nothing is uploaded: the PNGs go to DIR/sketches/NNNNNN_CLASS.png
 * and DIR/paintings/NNNNNN_CLASS_FAMILY.png (for looking, and for benches
 * that need no server).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "image.h"
#include "synth.h"

static int upload(struct cli *c, const char *path, const char *source, const uint8_t *png, size_t len, long *status)
{
	/* multipart by hand: one image field and a source field */
	static const char boundary[] = "atelier-synth-boundary-7316";
	struct at_buf b;
	at_buf_init(&b, (size_t)64 << 20);
	int rc = at_buf_printf(&b,
			       "--%s\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\n%s\r\n"
			       "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
			       "Content-Type: image/png\r\n\r\n",
			       boundary, source, boundary);
	if (rc == 0)
		rc = at_buf_add(&b, png, len);
	if (rc == 0)
		rc = at_buf_printf(&b, "\r\n--%s--\r\n", boundary);
	char ct[128];
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", boundary);
	struct http_client_resp r;
	http_client_resp_init(&r, 0);
	if (rc == 0)
		rc = cli_request(c, "POST", path, ct, b.data, b.len, &r);
	at_buf_free(&b);
	if (rc == 0) {
		*status = r.status;
		if (r.status >= 500 || r.status == 401 || r.status == 403)
			cli_fail(path, &r);
	} else if (r.error[0]) {
		cli_fail(path, &r); /* says why the call failed */
	}
	/* a failed call holds its handle and error too */
	http_client_resp_free(&r);
	return rc;
}

static int save(const char *dir, const char *sub, const char *name, const uint8_t *png, size_t len)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return AT_EIO;
	snprintf(p, sizeof p, "%s/%s/%s.png", dir, sub, name);
	FILE *f = fopen(p, "wb");
	if (!f)
		return AT_EIO;
	size_t w = fwrite(png, 1, len, f);
	return fclose(f) == 0 && w == len ? 0 : AT_EIO;
}

int cmd_synth(struct cli *c, const struct cli_args *a)
{
	long count, seed, size;
	const char *out = cli_arg(a, "out");
	if (cli_arg_long(a, "count", 200, 1, 1000000, &count) ||
	    cli_arg_long(a, "seed", 1, LONG_MIN, LONG_MAX, &seed) || cli_arg_long(a, "size", 256, 32, 1024, &size))
		return 2;
	if (out && mkdir(out, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "atelier synth: cannot create %s\n", out);
		return 1;
	}
	uint8_t *rgb = malloc((size_t)size * size * 3), *gray = malloc((size_t)size * size);
	if (!rgb || !gray) {
		free(rgb);
		free(gray);
		return 1;
	}
	long acc[2] = {0, 0}, dup[2] = {0, 0}, rej[2] = {0, 0}, written[2] = {0, 0}, failed = 0;
	for (long i = 0; i < count; i++) {
		/* one seed per index; lib/synth derives the sketch's and the
		 * painting's instances from separate streams, so they are unpaired */
		uint64_t s = (uint64_t)(seed * 1000003 + i);
		for (int d = 0; d < 2; d++) {
			struct synth_info info;
			int rc = d == 0 ? synth_sketch(s, (int)size, gray, &info)
					: synth_painting(s, (int)size, rgb, &info);
			uint8_t *png = NULL;
			size_t len = 0;
			if (rc == 0)
				rc = d == 0 ? image_encode_png(gray, (int)size, (int)size, 1, IMAGE_PNG_FAST, &png,
							       &len)
					    : image_encode_png(rgb, (int)size, (int)size, 3, 1, &png, &len);
			if (rc < 0) {
				failed++;
				continue;
			}
			if (out) {
				char name[128];
				if (d == 0)
					snprintf(name, sizeof name, "%06ld_%s", i, synth_class_name(info.cls));
				else
					snprintf(name, sizeof name, "%06ld_%s_%s", i, synth_class_name(info.cls),
						 synth_family_name(info.family));
				if (save(out, d == 0 ? "sketches" : "paintings", name, png, len) < 0)
					failed++;
				else
					written[d]++;
				free(png);
				continue;
			}
			long st = 0;
			rc = upload(c, d == 0 ? "/v1/sketches" : "/v1/paintings", "synth", png, len, &st);
			free(png);
			if (rc < 0 || st >= 500 || st == 401 || st == 403) {
				free(rgb);
				free(gray);
				fprintf(stderr, "atelier synth: upload failed; stopping\n");
				return 1;
			}
			if (st == 201)
				acc[d]++;
			else if (st == 200)
				dup[d]++;
			else
				rej[d]++;
		}
		cli_progress("synth", (size_t)i + 1, (size_t)count);
	}
	free(rgb);
	free(gray);
	if (out && c->json)
		printf("{\"out\":\"%s\",\"sketches\":{\"written\":%ld},\"paintings\":{\"written\":%ld},\"failed\":%ld}"
		       "\n",
		       out, written[0], written[1], failed);
	else if (out)
		printf("synth: %ld sketches and %ld paintings written to %s\n", written[0], written[1], out);
	else if (c->json)
		printf("{\"sketches\":{\"accepted\":%ld,\"duplicate\":%ld,\"rejected\":%ld},"
		       "\"paintings\":{\"accepted\":%ld,\"duplicate\":%ld,\"rejected\":%ld},\"failed\":%ld}\n",
		       acc[0], dup[0], rej[0], acc[1], dup[1], rej[1], failed);
	else
		printf("synth: %ld sketches and %ld paintings; sketches %ld accepted, %ld duplicate, %ld rejected; "
		       "paintings %ld accepted, %ld duplicate, %ld rejected\n",
		       count, count, acc[0], dup[0], rej[0], acc[1], dup[1], rej[1]);
	return failed ? 1 : 0;
}
