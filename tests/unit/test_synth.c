/*
 * test_synth.c — lib/synth.c and lib/sketchify.c: determinism, sketches that
 * ingest would accept, and the photo → sketch path producing real lines.
 * ATELIER_SYNTH_DUMP=dir writes the pictures as PNGs for a human to look at.
 */
#include <math.h>
#include <stdint.h>

#include "image.h"
#include "sketchify.h"
#include "synth.h"
#include "test.h"

static void dump(const char *name, uint64_t seed, const uint8_t *pix, int n, int c)
{
	const char *dir = getenv("ATELIER_SYNTH_DUMP");
	if (!dir)
		return;
	uint8_t *png;
	size_t len;
	if (image_encode_png(pix, n, n, c, 6, &png, &len) < 0)
		return;
	char path[512];
	snprintf(path, sizeof path, "%s/%s_%llu.png", dir, name, (unsigned long long)seed);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(png, 1, len, f);
		fclose(f);
	}
	free(png);
}

TEST(same_seed_same_bytes)
{
	int n = 128;
	uint8_t *a = malloc(n * n * 3), *b = malloc(n * n * 3), *ga = malloc(n * n), *gb = malloc(n * n);
	ASSERT_EQ_INT(synth_painting(42, n, a), 0);
	ASSERT_EQ_INT(synth_painting(42, n, b), 0);
	ASSERT(memcmp(a, b, n * n * 3) == 0);
	ASSERT_EQ_INT(synth_painting(43, n, b), 0);
	ASSERT(memcmp(a, b, n * n * 3) != 0);
	ASSERT_EQ_INT(synth_pair(7, n, a, ga), 0);
	ASSERT_EQ_INT(synth_pair(7, n, b, gb), 0);
	ASSERT(memcmp(a, b, n * n * 3) == 0);
	ASSERT(memcmp(ga, gb, n * n) == 0);
	ASSERT_EQ_INT(synth_photo(9, n, a), 0);
	ASSERT_EQ_INT(synth_photo(9, n, b), 0);
	ASSERT(memcmp(a, b, n * n * 3) == 0);
	ASSERT_EQ_INT(synth_painting(1, 8, a), AT_EINVAL);
	free(a);
	free(b);
	free(ga);
	free(gb);
}

TEST(pairs_have_sketches_ingest_accepts)
{
	int n = 256;
	uint8_t *rgb = malloc(n * n * 3), *gray = malloc(n * n);
	for (uint64_t seed = 1; seed <= 12; seed++) {
		ASSERT_EQ_INT(synth_pair(seed, n, rgb, gray), 0);
		dump("painting", seed, rgb, n, 3);
		dump("sketch", seed, gray, n, 1);
		double ink = image_ink_ratio(gray, n, n, 1, 128);
		ASSERT_OP_DBL(ink, >=, 0.01);
		ASSERT_OP_DBL(ink, <=, 0.4);
		/* both go through ingest's checks */
		uint8_t *png;
		size_t len;
		struct image_norm norm;
		char why[256];
		ASSERT_EQ_INT(image_encode_png(gray, n, n, 1, 0, &png, &len), 0);
		ASSERT_EQ_INT(image_normalize(png, len, NULL, &norm, why, sizeof why), 0);
		image_norm_free(&norm);
		free(png);
		struct image_opts po;
		image_opts_init(&po, IMAGE_PAINTING);
		ASSERT_EQ_INT(image_encode_png(rgb, n, n, 3, 1, &png, &len), 0);
		ASSERT_EQ_INT(image_normalize(png, len, &po, &norm, why, sizeof why), 0);
		image_norm_free(&norm);
		free(png);
	}
	free(rgb);
	free(gray);
}

TEST(photo_to_sketch_draws_lines)
{
	int n = 256;
	uint8_t *rgb = malloc(n * n * 3), *gray = malloc(n * n);
	for (uint64_t seed = 1; seed <= 6; seed++) {
		ASSERT_EQ_INT(synth_photo(seed, n, rgb), 0);
		double ink = 0;
		char why[256] = "";
		ASSERT_EQ_INT(sketchify(rgb, n, n, 3, NULL, NULL, gray, &ink, why, sizeof why), 0);
		dump("photo", seed, rgb, n, 3);
		dump("photo_sketch", seed, gray, n, 1);
		ASSERT_OP_DBL(ink, >, 0.01);
		ASSERT_OP_DBL(ink, <, 0.4);
		ASSERT_OP_DBL(fabs(ink - image_ink_ratio(gray, n, n, 1, 128)), <, 1e-12);
	}
	/* a non-square photo is centre-cropped to the square output */
	uint8_t *wide = malloc(300 * 300 * 3);
	ASSERT_EQ_INT(synth_photo(5, 300, wide), 0); /* and use its top 300x200 */
	struct sketchify_opts o;
	sketchify_opts_init(&o);
	o.size = 128;
	ASSERT_EQ_INT(sketchify(wide, 300, 200, 3, NULL, &o, gray, NULL, NULL, 0), 0);
	free(wide);
	free(rgb);
	free(gray);
}

TEST(blank_and_masked_out_photos_are_rejected)
{
	int n = 64;
	uint8_t *rgb = malloc(n * n * 3), *gray = malloc(n * n), *mask = calloc(n * n, 1);
	struct sketchify_opts o;
	sketchify_opts_init(&o);
	o.size = n;
	memset(rgb, 120, n * n * 3);
	char why[256] = "";
	double ink = -1;
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, NULL, &o, gray, &ink, why, sizeof why), AT_EUNPROCESSABLE);
	ASSERT_CONTAINS(why, "blank");
	ASSERT_OP_DBL(ink, ==, 0);
	ASSERT_EQ_INT(synth_photo(3, n, rgb), 0);
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, mask, &o, gray, &ink, why, sizeof why), AT_EUNPROCESSABLE);
	/* the mask keeps a square: its outline is all that is left */
	for (int y = 16; y < 48; y++)
		for (int x = 16; x < 48; x++)
			mask[y * n + x] = 1;
	memset(rgb, 30, n * n * 3);
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, mask, &o, gray, &ink, why, sizeof why), 0);
	ASSERT_EQ_INT(gray[32 * n + 32], 255); /* inside: flat */
	ASSERT_EQ_INT(gray[2 * n + 2], 255);   /* outside: background */
	int on_outline = 0;
	for (int x = 12; x < 20; x++)
		on_outline |= gray[32 * n + x] == 0;
	ASSERT(on_outline);
	o.high = 1;
	o.low = 2;
	ASSERT_EQ_INT(sketchify(rgb, n, n, 3, NULL, &o, gray, NULL, why, sizeof why), AT_EINVAL);
	free(rgb);
	free(gray);
	free(mask);
}

RUN_TESTS(same_seed_same_bytes, pairs_have_sketches_ingest_accepts, photo_to_sketch_draws_lines,
	  blank_and_masked_out_photos_are_rejected)
