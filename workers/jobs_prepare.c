/*
 * jobs_prepare.c — the prepare stage: a frozen dataset → two shards
 * (dataset.h) in the artifact store, one of training samples and one of the
 * frozen holdout set that evaluate scores every version on.
 *
 * Per image (read from PostgreSQL through a cursor, 64 rows a fetch, so
 * memory holds the shards and not every PNG at once):
 *   - a sketch is decoded to gray at its own size and normalised into
 *     size×size by lib/sketchnorm (cropped to its ink with a margin, strokes
 *     brought to size/40 px), the same code serving runs on a request;
 *   - a painting is decoded to RGB the same way;
 *   - a photo — any image whose `source` starts with "photo", whatever its
 *     domain — goes through the seed's sketch extraction (lib/sketchify with
 *     the stage's photo_to_sketch params) and becomes a *sketch* sample
 *     (flag SHARD_F_PHOTO), normalised by lib/sketchnorm like a drawn one so
 *     that photo edges and pen strokes reach the model at one width; the
 *     photo itself is never a painting sample;
 *   - blank samples are dropped and counted: a sketch with less than 0.2 %
 *     ink, a painting whose luma spans fewer than 8 levels, a photo whose
 *     extracted sketch has less ink than photo_to_sketch.min_ink; images that
 *     do not decode are dropped as corrupt. Pixels are uint8, so there is
 *     nothing non-finite to drop here (train checks its losses instead).
 *   - training samples (not holdout) get one augmented copy when
 *     augment.flip or augment.jitter is on: mirrored (flip) and/or cropped by
 *     up to jitter×size and scaled back (jitter), drawn from a generator
 *     seeded by the image id, so the same dataset gives the same shard bytes.
 */
#include <endian.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact.h"
#include "dataset.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "params.h"
#include "sketchify.h"
#include "sketchnorm.h"
#include "splitmix.h"

/* sketchify's hysteresis thresholds are gray levels per pixel of gradient;
 * the YAML's canny_low/high are fractions of this full scale. */
#define CANNY_FULL_SCALE 20.0
#define SKETCH_MIN_INK 0.002
#define PAINTING_MIN_CONTRAST 8

struct prep {
	int size;
	int flip;
	double jitter;
	struct sketchify_opts sk;
	struct shard train, hold;
	uint8_t *a, *b, *crop; /* scratch: size*size*3 each */
	long n_sketch, n_painting, n_photo, n_augmented;
	long dropped_blank, dropped_corrupt, photo_blank;
	long hold_dropped;
};

static double luma_span(const uint8_t *rgb, size_t npix)
{
	int lo = 255, hi = 0;
	for (size_t i = 0; i < npix; i++) {
		int y = (299 * rgb[3 * i] + 587 * rgb[3 * i + 1] + 114 * rgb[3 * i + 2]) / 1000;
		lo = y < lo ? y : lo;
		hi = y > hi ? y : hi;
	}
	return hi - lo;
}

/* The augmented copy of src (size×size×ch) into dst. */
static int augment(struct prep *p, const uint8_t *src, int ch, int64_t id, uint8_t *dst)
{
	int S = p->size;
	uint64_t r = splitmix64_at((uint64_t)id * 0x2545f4914f6cdd1dULL + 7);
	const uint8_t *cur = src;
	if (p->jitter > 0) {
		double u = (double)(r & 0xffff) / 65536.0;
		int c = S - (int)floor(p->jitter * S * u);
		if (c < S / 2)
			c = S / 2;
		r = splitmix64_at(r);
		int x0 = c < S ? (int)(r % (uint64_t)(S - c + 1)) : 0;
		r = splitmix64_at(r);
		int y0 = c < S ? (int)(r % (uint64_t)(S - c + 1)) : 0;
		for (int y = 0; y < c; y++)
			memcpy(p->crop + (size_t)y * c * ch, src + ((size_t)(y0 + y) * S + x0) * ch, (size_t)c * ch);
		int rc = image_resize(p->crop, c, c, ch, dst, S, S);
		if (rc < 0)
			return rc;
		cur = dst;
	}
	if (p->flip) {
		/* mirror each row in place (cur may be dst already) */
		if (cur != dst)
			memcpy(dst, cur, (size_t)S * S * ch);
		for (int y = 0; y < S; y++) {
			uint8_t *row = dst + (size_t)y * S * ch;
			for (int x = 0; x < S / 2; x++)
				for (int k = 0; k < ch; k++) {
					uint8_t t = row[x * ch + k];
					row[x * ch + k] = row[(S - 1 - x) * ch + k];
					row[(S - 1 - x) * ch + k] = t;
				}
		}
	}
	return 0;
}

/* One image row: decode, filter, add to the right shard. */
static int prep_image(struct prep *p, int64_t id, const char *domain, const char *source, const uint8_t *png,
		      size_t len, int holdout)
{
	int S = p->size;
	size_t ss = (size_t)S * S;
	int photo = strncmp(source, "photo", 5) == 0;
	int sketch = photo || strcmp(domain, "sketch") == 0;
	struct shard *sh = holdout ? &p->hold : &p->train;
	uint8_t *pix = NULL;
	int rc;
	uint8_t flags = 0;

	if (photo) {
		struct image_raw raw = {0};
		char why[128];
		rc = image_decode(png, len, 3, 0, &raw, why, sizeof why);
		if (rc < 0) {
			p->dropped_corrupt++;
			return 0;
		}
		double ink = 0;
		rc = sketchify(raw.pix, raw.width, raw.height, 3, NULL, &p->sk, p->a, &ink, why, sizeof why);
		image_raw_free(&raw);
		if (rc == 0) {
			rc = sketchnorm_apply(p->a, S, S, S, NULL, p->b, NULL);
			if (rc == 0)
				memcpy(p->a, p->b, ss);
		}
		if (rc == AT_EUNPROCESSABLE) {
			p->photo_blank++;
			if (holdout)
				p->hold_dropped++;
			else
				p->dropped_blank++;
			return 0;
		}
		if (rc < 0)
			return rc;
		flags = SHARD_F_PHOTO;
		p->n_photo++;
	} else if (sketch) {
		struct image_raw raw = {0};
		rc = image_decode(png, len, 1, 0, &raw, NULL, 0);
		if (rc < 0) {
			p->dropped_corrupt++;
			return 0;
		}
		rc = sketchnorm_apply(raw.pix, raw.width, raw.height, S, NULL, p->a, NULL);
		image_raw_free(&raw);
		if (rc == AT_ENOMEM)
			return rc;
		if (rc < 0 && rc != AT_EUNPROCESSABLE) {
			p->dropped_corrupt++; /* past sketchnorm's caps: ingest never stores such */
			return 0;
		}
		if (rc == AT_EUNPROCESSABLE || image_ink_ratio(p->a, S, S, 1, 128) < SKETCH_MIN_INK) {
			if (holdout)
				p->hold_dropped++;
			else
				p->dropped_blank++;
			return 0;
		}
	} else {
		rc = image_decode_rgb(png, len, S, &pix);
		if (rc < 0) {
			p->dropped_corrupt++;
			return 0;
		}
		memcpy(p->a, pix, 3 * ss);
		free(pix);
		int blank = luma_span(p->a, ss) < PAINTING_MIN_CONTRAST;
		if (blank) {
			if (holdout)
				p->hold_dropped++;
			else
				p->dropped_blank++;
			return 0;
		}
	}
	rc = sketch ? shard_add_sketch(sh, p->a, id, flags) : shard_add_painting(sh, p->a, id, flags);
	if (rc < 0)
		return rc;
	if (!holdout) {
		if (sketch)
			p->n_sketch++;
		else
			p->n_painting++;
	}
	if (!holdout && (p->flip || p->jitter > 0)) {
		if ((rc = augment(p, p->a, sketch ? 1 : 3, id, p->b)) < 0)
			return rc;
		rc = sketch ? shard_add_sketch(sh, p->b, id, flags | SHARD_F_AUGMENTED)
			    : shard_add_painting(sh, p->b, id, flags | SHARD_F_AUGMENTED);
		if (rc < 0)
			return rc;
		p->n_augmented++;
	}
	return 0;
}

static int store_shard(struct artifact_store *st, const struct shard *s, char sha[65])
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = shard_encode(s, &buf, &len);
	if (rc == 0)
		rc = artifact_put_bytes(st, buf, len, sha);
	free(buf);
	return rc;
}

static int64_t be_i64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return (int64_t)be64toh(v);
}

int job_prepare(struct job_ctx *ctx)
{
	json_t *payload = job_payload(ctx);
	struct params_reader pr;
	struct prepare_params pp;
	json_t *ds = dataset_input(payload, "collect", "dataset");
	PGconn *c = job_db(ctx);
	struct artifact_store *store = NULL;
	struct prep p;
	char why[512] = "", dsid[32], train_sha[65] = "", hold_sha[65] = "";
	PGresult *r = NULL;
	int rc = 0, in_tx = 0;

	memset(&p, 0, sizeof p);
	params_reader_init(&pr, "prepare", payload);
	int prc = prepare_params_read(&pr, &pp);
	p.size = (int)pp.size;
	p.flip = pp.flip;
	p.jitter = pp.jitter;
	sketchify_opts_init(&p.sk);
	p.sk.size = p.size;
	p.sk.blur_sigma = pp.blur_sigma;
	p.sk.low = pp.canny_low * CANNY_FULL_SCALE;
	p.sk.high = pp.canny_high * CANNY_FULL_SCALE;
	p.sk.dilate = (int)pp.dilate;
	p.sk.min_ink = pp.min_ink;
	shard_init(&p.train, p.size);
	shard_init(&p.hold, p.size);
	if (prc < 0) {
		snprintf(why, sizeof why, "%s", pr.why);
		job_no_retry(ctx);
		rc = prc;
		goto out;
	}
	if (!json_is_integer(ds) || p.size < 16 || p.size > 1024 || p.jitter < 0 || p.jitter > 1 ||
	    p.sk.high < p.sk.low) {
		snprintf(why, sizeof why,
			 "prepare: needs inputs.collect.dataset, size 16..1024, jitter 0..1, "
			 "canny_low <= canny_high");
		job_no_retry(ctx);
		rc = AT_EINVAL;
		goto out;
	}
	snprintf(dsid, sizeof dsid, "%lld", (long long)json_integer_value(ds));
	size_t ss3 = (size_t)p.size * p.size * 3;
	p.a = malloc(ss3);
	p.b = malloc(ss3);
	p.crop = malloc(ss3);
	if (!p.a || !p.b || !p.crop) {
		rc = AT_ENOMEM;
		goto out;
	}
	if ((rc = artifact_store_open(job_artifacts_uri(ctx), &store)) < 0) {
		snprintf(why, sizeof why, "prepare: artifact store %s: %s", job_artifacts_uri(ctx), at_strerror(rc));
		goto out;
	}

	const char *v[1] = {dsid};
	if ((rc = dataset_db_exec(c,
				  "SELECT (SELECT count(*) FROM dataset_members WHERE dataset_id = $1)"
				  " + (SELECT count(*) FROM dataset_holdout WHERE dataset_id = $1),"
				  " (SELECT count(*) FROM datasets WHERE id = $1)",
				  1, v, 0, &r, why, sizeof why)) < 0)
		goto out;
	long total = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	int exists = PQgetvalue(r, 0, 1)[0] == '1';
	PQclear(r);
	if (!exists) {
		snprintf(why, sizeof why, "prepare: no dataset %s", dsid);
		job_no_retry(ctx);
		rc = AT_ENOTFOUND;
		goto out;
	}
	if ((rc = dataset_db_exec(c, "BEGIN READ ONLY", 0, NULL, 0, &r, why, sizeof why)) < 0)
		goto out;
	in_tx = 1;
	PQclear(r);
	if ((rc = dataset_db_exec(c,
				  "DECLARE prep_rows NO SCROLL CURSOR FOR"
				  " SELECT i.id, i.domain, coalesce(i.source, ''), i.png, 0::int8 AS holdout"
				  "   FROM dataset_members m JOIN images i ON i.id = m.image_id WHERE m.dataset_id = $1"
				  " UNION ALL"
				  " SELECT i.id, i.domain, coalesce(i.source, ''), i.png, 1::int8"
				  "   FROM dataset_holdout h JOIN images i ON i.id = h.image_id WHERE h.dataset_id = $1"
				  " ORDER BY 5, 2, 1",
				  1, v, 0, &r, why, sizeof why)) < 0)
		goto out;
	PQclear(r);
	long done = 0;
	for (;;) {
		if (job_cancelled(ctx)) {
			rc = AT_ECANCELLED;
			snprintf(why, sizeof why, "prepare: stopped");
			goto out;
		}
		if ((rc = dataset_db_exec(c, "FETCH 64 FROM prep_rows", 0, NULL, 1, &r, why, sizeof why)) < 0)
			goto out;
		int n = PQntuples(r);
		for (int i = 0; i < n && rc == 0; i++) {
			char domain[16], source[64];
			snprintf(domain, sizeof domain, "%.*s", PQgetlength(r, i, 1), PQgetvalue(r, i, 1));
			snprintf(source, sizeof source, "%.*s", PQgetlength(r, i, 2), PQgetvalue(r, i, 2));
			rc = prep_image(&p, be_i64(PQgetvalue(r, i, 0)), domain, source,
					(const uint8_t *)PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3),
					be_i64(PQgetvalue(r, i, 4)) != 0);
		}
		PQclear(r);
		if (rc < 0) {
			snprintf(why, sizeof why, "prepare: %s", at_strerror(rc));
			goto out;
		}
		done += n;
		job_progress(ctx, total ? (double)done / (double)total : 1, "decoding images", -1);
		if (n == 0)
			break;
	}
	PGresult *cr = PQexec(c, "COMMIT");
	PQclear(cr);
	in_tx = 0;

	if (p.train.n_sketches == 0 || p.train.n_paintings == 0) {
		snprintf(why, sizeof why,
			 "prepare: nothing left to train on: %d sketch and %d painting samples after dropping %ld blank"
			 " and %ld corrupt images",
			 p.train.n_sketches, p.train.n_paintings, p.dropped_blank, p.dropped_corrupt);
		job_no_retry(ctx);
		rc = AT_EUNPROCESSABLE;
		goto out;
	}
	if ((rc = store_shard(store, &p.train, train_sha)) < 0 || (rc = store_shard(store, &p.hold, hold_sha)) < 0) {
		snprintf(why, sizeof why, "prepare: storing shards: %s", at_strerror(rc));
		goto out;
	}
	/* referenced by this run from now on: /v1/artifacts serves them */
	json_t *refs = json_pack("[s, s]", train_sha, hold_sha);
	rc = refs ? dataset_db_artifact_refs(c, refs, "shard", "application/octet-stream",
					     json_object_get(payload, "run"), NULL, why, sizeof why)
		  : AT_ENOMEM;
	json_decref(refs);
	if (rc < 0)
		goto out;
	log_info("prepare: dataset %s: %d sketch + %d painting samples (%ld photos, %ld augmented, %ld blank, %ld "
		 "corrupt dropped); holdout %d + %d",
		 dsid, p.train.n_sketches, p.train.n_paintings, p.n_photo, p.n_augmented, p.dropped_blank,
		 p.dropped_corrupt, p.hold.n_sketches, p.hold.n_paintings);
	json_t *res =
		json_pack("{s:I, s:i, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:I}", "dataset",
			  json_integer_value(ds), "size", p.size, "train_shard", train_sha, "holdout_shard", hold_sha,
			  "sketches", p.train.n_sketches, "paintings", p.train.n_paintings, "source_sketches",
			  (json_int_t)p.n_sketch, "source_paintings", (json_int_t)p.n_painting, "photos",
			  (json_int_t)p.n_photo, "augmented", (json_int_t)p.n_augmented, "dropped_blank",
			  (json_int_t)p.dropped_blank, "dropped_photo_blank", (json_int_t)p.photo_blank,
			  "dropped_corrupt", (json_int_t)p.dropped_corrupt, "holdout_sketches", p.hold.n_sketches,
			  "holdout_paintings", p.hold.n_paintings, "holdout_dropped_blank", (json_int_t)p.hold_dropped);
	job_set_result(ctx, res);
	rc = 0;
out:
	if (in_tx) {
		PGresult *rb = PQexec(c, "ROLLBACK");
		PQclear(rb);
	}
	if (rc < 0)
		job_errorf(ctx, "%s", why[0] ? why : at_strerror(rc));
	shard_free(&p.train);
	shard_free(&p.hold);
	free(p.a);
	free(p.b);
	free(p.crop);
	artifact_store_close(store);
	return rc;
}
