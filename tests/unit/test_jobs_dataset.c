/*
 * test_jobs_dataset.c — the pure parts of the training stages
 * (workers/dataset.c): the manifest hash (stable, order-free, sensitive to
 * every field) and the shard format (round trip, float conversion, refusal
 * of foreign or truncated bytes), collect's replay share, and the step
 * cache's key (workers/cache.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../workers/cache.h"
#include "../../workers/dataset.h"
#include "test.h"

static struct manifest_entry entry(const char *domain, int64_t id, char c)
{
	struct manifest_entry e;
	memset(&e, 0, sizeof e);
	snprintf(e.domain, sizeof e.domain, "%s", domain);
	e.id = id;
	memset(e.sha, c, 64);
	e.sha[64] = 0;
	return e;
}

TEST(manifest_known_value)
{
	/* the text hashed is "painting 3 aaa..\nsketch 1 bbb..\nsketch 10 ccc..\n" */
	struct manifest_entry e[3] = {entry("sketch", 10, 'c'), entry("painting", 3, 'a'), entry("sketch", 1, 'b')};
	char hex[65];
	dataset_manifest_sha256(e, 3, hex);
	ASSERT_STREQ(hex, "f58eb92f524725a7799b2c4dcffb41c1cecf6b4f73bea37809a7753e134862c1");
	dataset_manifest_sha256(NULL, 0, hex);
	ASSERT_STREQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(manifest_order_free_and_sensitive)
{
	enum { N = 50 };
	struct manifest_entry a[N], b[N];
	for (int i = 0; i < N; i++)
		a[i] = entry(i % 3 ? "sketch" : "painting", 1000 - i * 7, (char)('a' + i % 6));
	/* the same set in another order (a permutation by a stride coprime to N) */
	for (int i = 0; i < N; i++)
		b[i] = a[(i * 7) % N];
	char ha[65], hb[65];
	dataset_manifest_sha256(a, N, ha);
	dataset_manifest_sha256(b, N, hb);
	ASSERT_STREQ(ha, hb);
	/* a second hash of the (now sorted) array is the same again */
	dataset_manifest_sha256(a, N, hb);
	ASSERT_STREQ(ha, hb);
	/* any change of id, image hash or domain changes it */
	b[3].id++;
	dataset_manifest_sha256(b, N, hb);
	ASSERT(strcmp(ha, hb) != 0);
	b[3].id--;
	b[5].sha[10] = b[5].sha[10] == 'f' ? 'e' : 'f';
	dataset_manifest_sha256(b, N, hb);
	ASSERT(strcmp(ha, hb) != 0);
	dataset_manifest_sha256(a, N - 1, hb);
	ASSERT(strcmp(ha, hb) != 0);
}

static void fill(uint8_t *p, size_t n, int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + (size_t)seed * 17);
}

TEST(shard_round_trip)
{
	enum { S = 16 };
	struct shard s, d;
	shard_init(&s, S);
	uint8_t gray[S * S], rgb[S * S * 3];
	for (int i = 0; i < 70; i++) { /* past the first growth (64) */
		fill(gray, sizeof gray, i);
		ASSERT_EQ_INT(shard_add_sketch(&s, gray, 100 + i, (uint8_t)(i % 4)), 0);
	}
	for (int i = 0; i < 3; i++) {
		fill(rgb, sizeof rgb, 1000 + i);
		ASSERT_EQ_INT(shard_add_painting(&s, rgb, -5 - i, SHARD_F_AUGMENTED), 0);
	}
	uint8_t *buf = NULL;
	size_t len = 0;
	ASSERT_EQ_INT(shard_encode(&s, &buf, &len), 0);
	ASSERT_EQ_INT(len, 32 + 70 * S * S + 3 * 3 * S * S + 73 * 9);
	ASSERT(memcmp(buf, "ATLRSHRD", 8) == 0);
	ASSERT_EQ_INT(shard_decode(buf, len, &d), 0);
	ASSERT_EQ_INT(d.size, S);
	ASSERT_EQ_INT(d.n_sketches, 70);
	ASSERT_EQ_INT(d.n_paintings, 3);
	ASSERT(memcmp(d.sketch, s.sketch, 70 * S * S) == 0);
	ASSERT_EQ_INT(d.sketch_ids[69], 169);
	ASSERT_EQ_INT(d.sketch_flags[6], 2);
	ASSERT_EQ_INT(d.painting_ids[2], -7);
	ASSERT_EQ_INT(d.painting_flags[1], SHARD_F_AUGMENTED);
	/* paintings go in interleaved and come back out interleaved */
	uint8_t back[S * S * 3];
	shard_painting_rgb(&d, 2, back);
	ASSERT(memcmp(back, rgb, sizeof rgb) == 0);
	/* ... and are planar inside: plane R first */
	ASSERT_EQ_INT(d.painting[2 * 3 * S * S + 1], rgb[3]);
	ASSERT_EQ_INT(d.painting[2 * 3 * S * S + S * S], rgb[1]);
	/* floats in [-1, 1]: 0 -> -1, 255 -> 1 */
	float f[S * S * 3];
	shard_sketch_float(&d, 0, f);
	ASSERT_OP_DBL(f[0], ==, d.sketch[0] / 127.5 - 1.0);
	shard_painting_float(&d, 1, f);
	for (int k = 0; k < S * S * 3; k++)
		ASSERT(f[k] >= -1.0f && f[k] <= 1.0f);
	/* encoding is deterministic: the decoded shard encodes to the same bytes */
	uint8_t *buf2 = NULL;
	size_t len2 = 0;
	ASSERT_EQ_INT(shard_encode(&d, &buf2, &len2), 0);
	ASSERT_EQ_INT(len2, len);
	ASSERT(memcmp(buf, buf2, len) == 0);
	free(buf2);
	shard_free(&d);
	/* foreign, truncated, trailing */
	ASSERT_EQ_INT(shard_decode(buf, len - 1, &d), AT_ECORRUPT);
	ASSERT_EQ_INT(shard_decode(buf, 10, &d), AT_EUNSUPPORTED);
	buf[0] = 'X';
	ASSERT_EQ_INT(shard_decode(buf, len, &d), AT_EUNSUPPORTED);
	buf[0] = 'A';
	buf[12] = 17; /* size 17: byte count no longer matches */
	ASSERT_EQ_INT(shard_decode(buf, len, &d), AT_ECORRUPT);
	free(buf);
	shard_free(&s);
	shard_free(NULL);
}

TEST(empty_shard)
{
	struct shard s, d;
	shard_init(&s, 32);
	uint8_t *buf = NULL;
	size_t len = 0;
	ASSERT_EQ_INT(shard_encode(&s, &buf, &len), 0);
	ASSERT_EQ_INT(len, 32);
	ASSERT_EQ_INT(shard_decode(buf, len, &d), 0);
	ASSERT_EQ_INT(d.n_sketches + d.n_paintings, 0);
	shard_free(&d);
	free(buf);
}

TEST(inputs)
{
	json_error_t err;
	json_t *p = json_loads("{\"inputs\":{\"prep\":{\"train_shard\":\"abc\"}},\"dataset\":7}", 0, &err);
	/* a stage named otherwise is still found by its key; else the top level */
	ASSERT_STREQ(json_string_value(dataset_input(p, "prepare", "train_shard")), "abc");
	ASSERT_EQ_INT(json_integer_value(dataset_input(p, "collect", "dataset")), 7);
	ASSERT(dataset_input(p, "collect", "nothing") == NULL);
	json_decref(p);
}

TEST(replay_count)
{
	/* 300 new at 0.3: 300 * 0.3 / 0.7 = 128.6 -> 129, so replay is 30 % of 429 */
	ASSERT_EQ_INT(dataset_replay_count(300, 0.3, 50, 100000), 129);
	ASSERT_EQ_INT(dataset_replay_count(300, 0.0, 50, 100000), 0);
	/* capped by max_items, never negative */
	ASSERT_EQ_INT(dataset_replay_count(300, 0.3, 50, 400), 100);
	ASSERT_EQ_INT(dataset_replay_count(500, 0.3, 50, 400), 0);
	/* topped up to min_n when the new ones are too few */
	ASSERT_EQ_INT(dataset_replay_count(5, 0.3, 50, 100000), 45);
	ASSERT_EQ_INT(dataset_replay_count(0, 0.3, 50, 100000), 50);
	/* 1: everything that fits */
	ASSERT_EQ_INT(dataset_replay_count(10, 1.0, 0, 100), 90);
}

static void key_of(const char *payload, enum job_cache mode, const char *champion, const char *code, char key[65])
{
	json_error_t err;
	json_t *p = json_loads(payload, 0, &err);
	ASSERT(p != NULL);
	ASSERT_EQ_INT(step_cache_key(mode, "evaluate", p, champion, code, key), 0);
	ASSERT_EQ_INT((int)strlen(key), 64);
	json_decref(p);
}

TEST(step_cache_key)
{
	const char *base = "{\"run\":1,\"stage\":\"evaluate\",\"model\":\"m\",\"params\":{\"samples\":2,\"styles\":2},"
			   "\"gate\":[{\"metric\":\"edge_f1\",\"op\":\"min\",\"threshold\":0.5}],"
			   "\"inputs\":{\"train\":{\"sha256\":\"ab\",\"steps\":4}},\"pipeline_version_id\":3}";
	char k[65], other[65];
	key_of(base, JOB_CACHE_CHAMPION, NULL, "v1", k);
	/* run, stage, version and key order are not part of it */
	key_of("{\"inputs\":{\"train\":{\"steps\":4,\"sha256\":\"ab\"}},\"params\":{\"styles\":2,\"samples\":2},"
	       "\"model\":\"m\",\"gate\":[{\"threshold\":0.5,\"op\":\"min\",\"metric\":\"edge_f1\"}],\"run\":9,"
	       "\"stage\":\"eval2\",\"pipeline_version_id\":4}",
	       JOB_CACHE_CHAMPION, NULL, "v1", other);
	ASSERT_STREQ(k, other);
	/* the gate, an input, params, the model, the code and the champion are */
	const char *changed[] = {
		"{\"model\":\"m\",\"params\":{\"samples\":2,\"styles\":2},\"gate\":[{\"metric\":\"edge_f1\","
		"\"op\":\"min\",\"threshold\":0.6}],\"inputs\":{\"train\":{\"sha256\":\"ab\",\"steps\":4}}}",
		"{\"model\":\"m\",\"params\":{\"samples\":2,\"styles\":2},\"gate\":[{\"metric\":\"edge_f1\","
		"\"op\":\"min\",\"threshold\":0.5}],\"inputs\":{\"train\":{\"sha256\":\"ac\",\"steps\":4}}}",
		"{\"model\":\"m\",\"params\":{\"samples\":3,\"styles\":2},\"gate\":[{\"metric\":\"edge_f1\","
		"\"op\":\"min\",\"threshold\":0.5}],\"inputs\":{\"train\":{\"sha256\":\"ab\",\"steps\":4}}}",
		"{\"model\":\"n\",\"params\":{\"samples\":2,\"styles\":2},\"gate\":[{\"metric\":\"edge_f1\","
		"\"op\":\"min\",\"threshold\":0.5}],\"inputs\":{\"train\":{\"sha256\":\"ab\",\"steps\":4}}}",
	};
	for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
		key_of(changed[i], JOB_CACHE_CHAMPION, NULL, "v1", other);
		ASSERT(strcmp(k, other) != 0);
	}
	key_of(base, JOB_CACHE_CHAMPION, NULL, "v2", other);
	ASSERT(strcmp(k, other) != 0);
	key_of(base, JOB_CACHE_CHAMPION, "ffee", "v1", other);
	ASSERT(strcmp(k, other) != 0);
	/* JOB_CACHE_INPUTS ignores the champion */
	char a[65], b[65];
	key_of(base, JOB_CACHE_INPUTS, NULL, "v1", a);
	key_of(base, JOB_CACHE_INPUTS, "ffee", "v1", b);
	ASSERT_STREQ(a, b);
	/* never: no key; no code version: no key */
	json_t *p = json_loads(base, 0, NULL);
	ASSERT_EQ_INT(step_cache_key(JOB_CACHE_NEVER, "collect", p, NULL, "v1", a), AT_EINVAL);
	ASSERT_EQ_INT(step_cache_key(JOB_CACHE_INPUTS, "train", p, NULL, "", a), AT_EINVAL);
	json_decref(p);
	/* the build has one (the Makefile's content hash) */
	ASSERT_EQ_INT((int)strlen(step_cache_code_version()), 64);
}

RUN_TESTS(manifest_known_value, manifest_order_free_and_sensitive, shard_round_trip, empty_shard, inputs, replay_count,
	  step_cache_key)
