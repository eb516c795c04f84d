/*
 * samples.c — `atelier samples MODEL VERSION [--sheet FILE]`: the evaluation
 * samples of a version (GET /v1/models/{m}/versions/{v}/samples), as a list,
 * or drawn into one PNG sheet: a row per holdout sketch, the sketch first,
 * then the candidate's painting in each style, then (after a gap) the
 * champion's on the same inputs. Every image comes from /v1/artifacts/{sha}.
 *
 * Bounded: at most SHEET_MAX_ROWS rows and SHEET_MAX_STYLES styles a role are
 * drawn, each image at most SHEET_MAX_SIDE pixels a side. An entry whose
 * ids are not sha256s or whose style is out of range is skipped; an image
 * that cannot be fetched or decoded ends the command with no sheet written.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact.h"
#include "commands.h"
#include "fsutil.h"
#include "image.h"

#define SHEET_MAX_ROWS 64
#define SHEET_MAX_STYLES 16
#define SHEET_MAX_SIDE 512
#define SHEET_CELL 128 /* every image is drawn at this side (nearest neighbour) */
#define SHEET_GAP 16

struct sheet {
	uint8_t *pix; /* RGB */
	int w, h;
};

/* Only characters that need no escaping in a path segment: model names are
 * [a-z0-9_-] (pipeline_yaml.c), versions are numbers. */
static int is_plain(const char *s)
{
	if (!*s || strlen(s) > 63 || !strncmp(s, "--", 2))
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return 0;
	return 1;
}

/* GET /v1/artifacts/{sha} into r (its path into path); -1 after saying why.
 * Anything but 64 lowercase hex digits is not put into a request path. */
static int get_artifact(struct cli *c, const char *sha, char path[128], struct http_client_resp *r)
{
	if (!artifact_valid_sha(sha)) {
		fprintf(stderr, "atelier: the server listed a malformed artifact id\n");
		return -1;
	}
	snprintf(path, 128, "/v1/artifacts/%s", sha);
	if (cli_request(c, "GET", path, NULL, NULL, 0, r) < 0 || r->status != 200) {
		cli_fail(path, r);
		http_client_resp_free(r);
		return -1;
	}
	return 0;
}

/* Fetches an artifact and decodes it as RGB. */
static int fetch_image(struct cli *c, const char *sha, struct image_raw *img)
{
	char path[128];
	struct http_client_resp r;
	if (get_artifact(c, sha, path, &r) < 0)
		return -1;
	char why[128];
	int rc = image_decode((const uint8_t *)r.body.data, r.body.len, 3, (uint64_t)SHEET_MAX_SIDE * SHEET_MAX_SIDE,
			      img, why, sizeof why);
	http_client_resp_free(&r);
	if (rc < 0) {
		fprintf(stderr, "atelier: %s: %s\n", path, why);
		return -1;
	}
	if (img->width > SHEET_MAX_SIDE || img->height > SHEET_MAX_SIDE) {
		fprintf(stderr, "atelier: %s: %dx%d is larger than a sample can be\n", path, img->width, img->height);
		image_raw_free(img);
		return -1;
	}
	return 0;
}

static void draw(struct sheet *s, int x0, int y0, const struct image_raw *img)
{
	for (int y = 0; y < SHEET_CELL; y++)
		for (int x = 0; x < SHEET_CELL; x++) {
			const uint8_t *p = img->pix + ((size_t)(y * img->height / SHEET_CELL) * img->width +
						       (size_t)(x * img->width / SHEET_CELL)) *
							      3;
			memcpy(s->pix + ((size_t)(y0 + y) * s->w + x0 + x) * 3, p, 3);
		}
}

static int find(const char **list, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(list[i], s))
			return i;
	return -1;
}

/* The sample's style index, or -1 when absent or beyond what a sheet draws
 * (checked before narrowing: 2^32 must not come back as style 0). */
static int style_of(json_t *sample)
{
	json_t *v = json_object_get(sample, "style");
	json_int_t k = json_integer_value(v);
	return json_is_integer(v) && k >= 0 && k < SHEET_MAX_STYLES ? (int)k : -1;
}

static int write_sheet(struct cli *c, json_t *samples, const char *file)
{
	const char *rows[SHEET_MAX_ROWS];
	int nrows = 0, nstyles = 0, has_champion = 0, rc = 1;
	size_t i;
	json_t *s;
	json_array_foreach(samples, i, s)
	{
		const char *sk = json_string_value(json_object_get(s, "sketch"));
		int k = style_of(s);
		if (!sk || !artifact_valid_sha(sk) || k < 0)
			continue;
		if (find(rows, nrows, sk) < 0 && nrows < SHEET_MAX_ROWS)
			rows[nrows++] = sk;
		if (k + 1 > nstyles)
			nstyles = k + 1;
		const char *role = json_string_value(json_object_get(s, "role"));
		if (role && !strcmp(role, "champion"))
			has_champion = 1;
	}
	if (!nrows) {
		fprintf(stderr, "atelier: the version has no samples\n");
		return 1;
	}
	struct sheet sh;
	int cols = 1 + nstyles * (has_champion ? 2 : 1);
	sh.w = cols * SHEET_CELL + (has_champion ? SHEET_GAP : 0);
	sh.h = nrows * SHEET_CELL;
	if (!(sh.pix = malloc((size_t)sh.w * sh.h * 3))) {
		fprintf(stderr, "atelier: out of memory for a %dx%d sheet\n", sh.w, sh.h);
		return 1;
	}
	memset(sh.pix, 255, (size_t)sh.w * sh.h * 3);
	struct image_raw img = {0};
	for (int r = 0; r < nrows; r++) {
		if (fetch_image(c, rows[r], &img) < 0)
			goto out;
		draw(&sh, 0, r * SHEET_CELL, &img);
		image_raw_free(&img);
	}
	json_array_foreach(samples, i, s)
	{
		const char *sk = json_string_value(json_object_get(s, "sketch"));
		const char *o = json_string_value(json_object_get(s, "output"));
		const char *role = json_string_value(json_object_get(s, "role"));
		int k = style_of(s), r = sk ? find(rows, nrows, sk) : -1;
		if (r < 0 || !o || !artifact_valid_sha(o) || k < 0 || k >= nstyles)
			continue;
		int champ = role && !strcmp(role, "champion");
		int x = (1 + k + (champ ? nstyles : 0)) * SHEET_CELL + (champ ? SHEET_GAP : 0);
		if (fetch_image(c, o, &img) < 0)
			goto out;
		draw(&sh, x, r * SHEET_CELL, &img);
		image_raw_free(&img);
	}
	uint8_t *png = NULL;
	size_t len = 0;
	FILE *f = NULL;
	int wrote = image_encode_png(sh.pix, sh.w, sh.h, 3, 6, &png, &len) == 0 && (f = fopen(file, "wb")) &&
		    fwrite(png, 1, len, f) == len;
	/* a full disk may only show at fclose; a half-written sheet is removed */
	if (f && fclose(f) != 0)
		wrote = 0;
	if (!wrote) {
		fprintf(stderr, "atelier: cannot write %s\n", file);
		if (f)
			remove(file);
	} else {
		printf("%s: %d sketches x %d styles%s\n", file, nrows, nstyles,
		       has_champion ? ", candidate then champion" : "");
		rc = 0;
	}
	free(png);
out:
	image_raw_free(&img);
	free(sh.pix);
	return rc;
}

/* Fetches artifact sha into dir/name (a PNG: anything else is refused). */
static int save_artifact(struct cli *c, const char *sha, const char *dir, const char *name)
{
	char path[128], file[4200];
	struct http_client_resp r;
	if (get_artifact(c, sha, path, &r) < 0)
		return -1;
	int rc = -1;
	if (r.body.len < 8 || memcmp(r.body.data, "\x89PNG\r\n\x1a\n", 8)) {
		fprintf(stderr, "atelier: %s is not a PNG image\n", path);
		goto out;
	}
	snprintf(file, sizeof file, "%s/%s", dir, name);
	FILE *f = fopen(file, "wb");
	int ok = f && fwrite(r.body.data, 1, r.body.len, f) == r.body.len;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok) {
		fprintf(stderr, "atelier: cannot write %s\n", file);
		if (f)
			remove(file);
		goto out;
	}
	rc = 0;
out:
	http_client_resp_free(&r);
	return rc;
}

/* --out DIR: every sample's output as SKETCH-STYLE-ROLE.png and each input
 * sketch once as SKETCH-sketch.png (SKETCH: the first 12 hex digits of its
 * sha256, which sorts a sketch's images together). */
static int write_dir(struct cli *c, json_t *samples, const char *dir)
{
	if (at_mkdir_p(dir) < 0) {
		fprintf(stderr, "atelier: cannot create %s\n", dir);
		return 1;
	}
	const char *seen[SHEET_MAX_ROWS * 4];
	int nseen = 0, files = 0;
	size_t i;
	json_t *s;
	json_array_foreach(samples, i, s)
	{
		const char *sk = json_string_value(json_object_get(s, "sketch"));
		const char *o = json_string_value(json_object_get(s, "output"));
		const char *role = json_string_value(json_object_get(s, "role"));
		json_t *st = json_object_get(s, "style");
		if (!sk || !o || !artifact_valid_sha(sk) || !json_is_integer(st))
			continue;
		if (!role || (strcmp(role, "candidate") && strcmp(role, "champion")))
			role = "candidate";
		char name[96];
		if (find(seen, nseen, sk) < 0 && nseen < (int)(sizeof seen / sizeof seen[0])) {
			seen[nseen++] = sk;
			snprintf(name, sizeof name, "%.12s-sketch.png", sk);
			if (save_artifact(c, sk, dir, name) < 0)
				return 1;
			files++;
		}
		snprintf(name, sizeof name, "%.12s-%lld-%s.png", sk, (long long)json_integer_value(st), role);
		if (save_artifact(c, o, dir, name) < 0)
			return 1;
		files++;
	}
	if (!files) {
		fprintf(stderr, "atelier: the version has no samples\n");
		return 1;
	}
	printf("%s: %d images\n", dir, files);
	return 0;
}

int cmd_samples(struct cli *c, const struct cli_args *a)
{
	const char *sheet = cli_arg(a, "sheet"), *dir = cli_arg(a, "out");
	char *const *argv = a->pos;
	if (!is_plain(argv[0]) || !is_plain(argv[1]) || (sheet && !*sheet) || (dir && !*dir)) {
		cli_args_usage(stderr, a->cmd);
		return 2;
	}
	char path[512];
	json_t *out = NULL;
	long st;
	snprintf(path, sizeof path, "/v1/models/%s/versions/%s/samples", argv[0], argv[1]);
	if (cli_json(c, "GET", path, NULL, &st, &out) < 0)
		return 1;
	json_t *samples = json_object_get(out, "samples");
	int rc = 0;
	if (dir)
		rc = write_dir(c, samples, dir);
	if (rc == 0 && sheet) {
		if (image_init() < 0) {
			fprintf(stderr, "atelier: image codecs unavailable\n");
			rc = 1;
		} else {
			rc = write_sheet(c, samples, sheet);
		}
	} else if (dir) {
		/* the images are the answer */
	} else if (c->json) {
		cli_print_json(out);
	} else {
		printf("%-10s %-6s %-14s %-14s %s\n", "ROLE", "STYLE", "SKETCH", "OUTPUT", "SLICE");
		size_t i;
		json_t *s;
		json_array_foreach(samples, i, s)
		{
			const char *role = json_string_value(json_object_get(s, "role"));
			const char *slice = json_string_value(json_object_get(s, "slice"));
			const char *sk = json_string_value(json_object_get(s, "sketch"));
			const char *o = json_string_value(json_object_get(s, "output"));
			printf("%-10s %-6lld %-14.12s %-14.12s %s\n", role ? role : "candidate",
			       (long long)json_integer_value(json_object_get(s, "style")), sk ? sk : "-", o ? o : "-",
			       slice ? slice : "");
		}
	}
	json_decref(out);
	return rc;
}
