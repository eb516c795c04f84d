/*
 * dataset.c — manifest hash, training shard format, stage inputs and the
 * worker's blocking SQL helper (dataset.h). The shard is built in memory by
 * prepare and read whole by train and evaluate: its size is capped
 * (SHARD_MAX_BYTES) rather than streamed, which is fine for the data sets a
 * single host trains on.
 */
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "fsutil.h"

/* ---- manifest ---- */

static int manifest_cmp(const void *a, const void *b)
{
	const struct manifest_entry *x = a, *y = b;
	int c = strcmp(x->domain, y->domain);
	if (c)
		return c;
	return x->id < y->id ? -1 : x->id > y->id;
}

void dataset_manifest_sha256(struct manifest_entry *e, size_t n, char hex[65])
{
	if (n)
		qsort(e, n, sizeof *e, manifest_cmp);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (size_t i = 0; i < n; i++) {
		char line[128];
		int k = snprintf(line, sizeof line, "%s %lld %s\n", e[i].domain, (long long)e[i].id, e[i].sha);
		EVP_DigestUpdate(md, line, (size_t)k);
	}
	unsigned char d[32];
	EVP_DigestFinal_ex(md, d, NULL);
	EVP_MD_CTX_free(md);
	at_hex_encode(hex, d, sizeof d);
}

long long dataset_replay_count(long long new_n, double replay, long long min_n, long long max_items)
{
	long long room = max_items - new_n, k;
	if (room <= 0 || !(replay > 0))
		return 0;
	if (replay >= 1)
		k = room;
	else
		k = llround((double)new_n * replay / (1 - replay));
	if (k < min_n - new_n)
		k = min_n - new_n;
	return k > room ? room : k;
}

/* ---- shards ---- */

void shard_init(struct shard *s, int size)
{
	memset(s, 0, sizeof *s);
	s->size = size;
}

void shard_free(struct shard *s)
{
	if (!s)
		return;
	free(s->sketch);
	free(s->painting);
	free(s->sketch_flags);
	free(s->painting_flags);
	free(s->sketch_ids);
	free(s->painting_ids);
	int size = s->size;
	memset(s, 0, sizeof *s);
	s->size = size;
}

/* Grows the arrays of one domain to hold at least n samples. */
static int shard_grow(uint8_t **pix, uint8_t **flags, int64_t **ids, int *cap, int n, size_t sample)
{
	if (n <= *cap)
		return 0;
	int ncap = *cap ? *cap * 2 : 64;
	while (ncap < n)
		ncap *= 2;
	uint8_t *p = realloc(*pix, (size_t)ncap * sample);
	if (!p)
		return AT_ENOMEM;
	*pix = p;
	uint8_t *f = realloc(*flags, (size_t)ncap);
	if (!f)
		return AT_ENOMEM;
	*flags = f;
	int64_t *d = realloc(*ids, (size_t)ncap * sizeof *d);
	if (!d)
		return AT_ENOMEM;
	*ids = d;
	*cap = ncap;
	return 0;
}

int shard_add_sketch(struct shard *s, const uint8_t *gray, int64_t id, uint8_t flags)
{
	size_t ss = (size_t)s->size * s->size;
	int rc = shard_grow(&s->sketch, &s->sketch_flags, &s->sketch_ids, &s->cap_s, s->n_sketches + 1, ss);
	if (rc < 0)
		return rc;
	memcpy(s->sketch + (size_t)s->n_sketches * ss, gray, ss);
	s->sketch_flags[s->n_sketches] = flags;
	s->sketch_ids[s->n_sketches] = id;
	s->n_sketches++;
	return 0;
}

int shard_add_painting(struct shard *s, const uint8_t *rgb, int64_t id, uint8_t flags)
{
	size_t ss = (size_t)s->size * s->size;
	int rc = shard_grow(&s->painting, &s->painting_flags, &s->painting_ids, &s->cap_p, s->n_paintings + 1, 3 * ss);
	if (rc < 0)
		return rc;
	uint8_t *dst = s->painting + (size_t)s->n_paintings * 3 * ss;
	for (size_t i = 0; i < ss; i++) {
		dst[i] = rgb[3 * i];
		dst[ss + i] = rgb[3 * i + 1];
		dst[2 * ss + i] = rgb[3 * i + 2];
	}
	s->painting_flags[s->n_paintings] = flags;
	s->painting_ids[s->n_paintings] = id;
	s->n_paintings++;
	return 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_i64(uint8_t *p, int64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static int64_t get_i64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return (int64_t)v;
}

/* Total encoded size, or 0 when it would exceed the cap. */
static uint64_t shard_bytes(uint64_t size, uint64_t ns, uint64_t np)
{
	uint64_t ss = size * size;
	uint64_t total = SHARD_HEADER + ns * ss + np * 3 * ss + (ns + np) * 9;
	return total > SHARD_MAX_BYTES ? 0 : total;
}

int shard_encode(const struct shard *s, uint8_t **out, size_t *len)
{
	uint64_t total = shard_bytes((uint64_t)s->size, (uint64_t)s->n_sketches, (uint64_t)s->n_paintings);
	if (!total)
		return AT_ETOOBIG;
	uint8_t *b = calloc(1, total);
	if (!b)
		return AT_ENOMEM;
	size_t ss = (size_t)s->size * s->size;
	memcpy(b, SHARD_MAGIC, 8);
	put_u32(b + 8, SHARD_VERSION);
	put_u32(b + 12, (uint32_t)s->size);
	put_u32(b + 16, (uint32_t)s->n_sketches);
	put_u32(b + 20, (uint32_t)s->n_paintings);
	uint8_t *p = b + SHARD_HEADER;
	if (s->n_sketches)
		memcpy(p, s->sketch, (size_t)s->n_sketches * ss);
	p += (size_t)s->n_sketches * ss;
	if (s->n_paintings)
		memcpy(p, s->painting, (size_t)s->n_paintings * 3 * ss);
	p += (size_t)s->n_paintings * 3 * ss;
	if (s->n_sketches)
		memcpy(p, s->sketch_flags, (size_t)s->n_sketches);
	p += s->n_sketches;
	if (s->n_paintings)
		memcpy(p, s->painting_flags, (size_t)s->n_paintings);
	p += s->n_paintings;
	for (int i = 0; i < s->n_sketches; i++, p += 8)
		put_i64(p, s->sketch_ids[i]);
	for (int i = 0; i < s->n_paintings; i++, p += 8)
		put_i64(p, s->painting_ids[i]);
	*out = b;
	*len = (size_t)total;
	return 0;
}

int shard_decode(const uint8_t *data, size_t len, struct shard *out)
{
	if (len < SHARD_HEADER || memcmp(data, SHARD_MAGIC, 8) != 0 || get_u32(data + 8) != SHARD_VERSION)
		return AT_EUNSUPPORTED;
	uint32_t size = get_u32(data + 12), ns = get_u32(data + 16), np = get_u32(data + 20);
	if (size < 1 || size > 8192 || ns > INT32_MAX || np > INT32_MAX)
		return AT_ECORRUPT;
	uint64_t total = shard_bytes(size, ns, np);
	if (!total || total != len)
		return AT_ECORRUPT;
	shard_init(out, (int)size);
	size_t ss = (size_t)size * size;
	int rc = 0;
	/* Exact-size allocations; the +1 keeps malloc(0) out of the picture. */
	out->sketch = malloc(ns * ss + 1);
	out->painting = malloc(np * 3 * ss + 1);
	out->sketch_flags = malloc(ns + 1);
	out->painting_flags = malloc(np + 1);
	out->sketch_ids = malloc((ns + 1) * sizeof(int64_t));
	out->painting_ids = malloc((np + 1) * sizeof(int64_t));
	if (!out->sketch || !out->painting || !out->sketch_flags || !out->painting_flags || !out->sketch_ids ||
	    !out->painting_ids) {
		rc = AT_ENOMEM;
		goto out;
	}
	const uint8_t *p = data + SHARD_HEADER;
	memcpy(out->sketch, p, ns * ss);
	p += ns * ss;
	memcpy(out->painting, p, np * 3 * ss);
	p += np * 3 * ss;
	memcpy(out->sketch_flags, p, ns);
	p += ns;
	memcpy(out->painting_flags, p, np);
	p += np;
	for (uint32_t i = 0; i < ns; i++, p += 8)
		out->sketch_ids[i] = get_i64(p);
	for (uint32_t i = 0; i < np; i++, p += 8)
		out->painting_ids[i] = get_i64(p);
	out->n_sketches = out->cap_s = (int)ns;
	out->n_paintings = out->cap_p = (int)np;
out:
	if (rc < 0)
		shard_free(out);
	return rc;
}

int shard_read_file(const char *path, struct shard *out)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT ? AT_ENOTFOUND : AT_EIO;
	int rc = 0;
	uint8_t *buf = NULL;
	long len = -1;
	if (fseek(f, 0, SEEK_END) == 0)
		len = ftell(f);
	if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
		rc = AT_EIO;
		goto out;
	}
	if ((uint64_t)len > SHARD_MAX_BYTES) {
		rc = AT_ETOOBIG;
		goto out;
	}
	buf = malloc((size_t)len + 1);
	if (!buf) {
		rc = AT_ENOMEM;
		goto out;
	}
	if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
		rc = AT_EIO;
		goto out;
	}
	rc = shard_decode(buf, (size_t)len, out);
out:
	free(buf);
	fclose(f);
	return rc;
}

void shard_sketch_float(const struct shard *s, int i, float *dst)
{
	size_t ss = (size_t)s->size * s->size;
	const uint8_t *src = s->sketch + (size_t)i * ss;
	for (size_t k = 0; k < ss; k++)
		dst[k] = (float)src[k] / 127.5f - 1.0f;
}

void shard_painting_float(const struct shard *s, int i, float *dst)
{
	size_t n = (size_t)s->size * s->size * 3;
	const uint8_t *src = s->painting + (size_t)i * n;
	for (size_t k = 0; k < n; k++)
		dst[k] = (float)src[k] / 127.5f - 1.0f;
}

void shard_painting_rgb(const struct shard *s, int i, uint8_t *rgb)
{
	size_t ss = (size_t)s->size * s->size;
	const uint8_t *src = s->painting + (size_t)i * 3 * ss;
	for (size_t k = 0; k < ss; k++) {
		rgb[3 * k] = src[k];
		rgb[3 * k + 1] = src[ss + k];
		rgb[3 * k + 2] = src[2 * ss + k];
	}
}

/* ---- inputs ---- */

json_t *dataset_input(json_t *payload, const char *stage, const char *key)
{
	json_t *in = json_object_get(json_object_get(payload, "inputs"), stage);
	json_t *v = json_object_get(in, key);
	if (v && !json_is_null(v))
		return v;
	/* A pipeline may name its stages differently: any input carrying the key. */
	const char *name;
	json_t *obj;
	json_object_foreach(json_object_get(payload, "inputs"), name, obj)
	{
		v = json_object_get(obj, key);
		if (v && !json_is_null(v))
			return v;
	}
	return json_object_get(payload, key);
}

/* ---- SQL ---- */

int dataset_db_exec(PGconn *c, const char *sql, int n, const char *const *vals, int binary, PGresult **res, char *why,
		    size_t whylen)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, binary ? 1 : 0);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		*res = r;
		return 0;
	}
	const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
	snprintf(why, whylen, "%s", msg && *msg ? msg : "database error");
	/* libpq messages end in a newline; the job's error column does not need it */
	size_t l = strlen(why);
	while (l && (why[l - 1] == '\n' || why[l - 1] == ' '))
		why[--l] = 0;
	PQclear(r);
	*res = NULL;
	return AT_EDB;
}

int dataset_db_production(PGconn *c, const char *model, int *found, int64_t *version_id, int *version, char sha[65],
			  char *why, size_t whylen)
{
	PGresult *r;
	const char *v[1] = {model};
	int rc = dataset_db_exec(
		c,
		"SELECT v.id, v.version, v.sha256 FROM channels c JOIN model_versions v ON v.id = c.version_id"
		" WHERE c.model = $1 AND c.channel = 'production'",
		1, v, 0, &r, why, whylen);
	if (rc < 0)
		return rc;
	*found = PQntuples(r) == 1;
	if (*found) {
		*version_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		*version = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
		snprintf(sha, 65, "%s", PQgetvalue(r, 0, 2));
	}
	PQclear(r);
	return 0;
}

int dataset_db_artifact_refs(PGconn *c, const json_t *shas, const char *kind, const char *content_type,
			     const json_t *run, const char *version_id, char *why, size_t whylen)
{
	char *list = json_dumps(shas, JSON_COMPACT), runs[32] = "";
	if (!list)
		return AT_ENOMEM;
	if (json_is_integer(run))
		snprintf(runs, sizeof runs, "%lld", (long long)json_integer_value(run));
	const char *v[5] = {list, kind, content_type, runs[0] ? runs : NULL, version_id};
	PGresult *r = NULL;
	int rc = dataset_db_exec(
		c,
		"INSERT INTO artifact_refs (sha256, kind, content_type, run_id, version_id) "
		"SELECT DISTINCT s, $2, $3, $4::bigint, $5::bigint FROM jsonb_array_elements_text($1::jsonb) s "
		"ON CONFLICT (sha256) DO NOTHING",
		5, v, 0, &r, why, whylen);
	PQclear(r);
	free(list);
	return rc;
}
