/*
 * fuzz_image.c — libFuzzer target for lib/image.c: sniffing, the fast PNG
 * decoder, the libpng fallback, normalisation and the header-only
 * image_probe(), on arbitrary bytes. The
 * pixel cap is lowered so that a header claiming a huge image is refused
 * rather than decoded slowly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (image_init() < 0)
		abort();
	struct image_opts o;
	image_opts_init(&o, (size & 1) ? IMAGE_PAINTING : IMAGE_SKETCH);
	o.max_pixels = 1 << 20;
	o.size = 64;
	struct image_norm n;
	char why[256];
	if (image_normalize(data, size, &o, &n, why, sizeof why) == 0) {
		/* What we store must decode and normalise again. A painting comes
		 * back with the same hash. A sketch usually does too (sketchnorm
		 * passes an already-normalised square through, see
		 * test_image.c:same_pixels_same_hash), but not always: a drawing
		 * that is all filled shapes, or a lone dot, is drawn again, and
		 * may then even fall outside the ink range. */
		struct image_norm again;
		int rc = image_normalize(n.png, n.png_len, &o, &again, why, sizeof why);
		if (o.domain == IMAGE_PAINTING ? rc != 0 || memcmp(again.sha256, n.sha256, 32) != 0
					       : rc != 0 && rc != AT_EUNPROCESSABLE)
			abort();
		if (rc == 0)
			image_norm_free(&again);
	}
	image_norm_free(&n);
	/* The header-only check a node makes before spooling must agree with
	 * the decoder: whatever decodes passes it, with the same dimensions. */
	int pw = 0, ph = 0;
	int prc = image_probe(data, size, 1 << 20, &pw, &ph, why, sizeof why);
	struct image_raw raw;
	if (image_decode(data, size, 1, 1 << 20, &raw, why, sizeof why) == 0) {
		if (prc != 0 || pw != raw.width || ph != raw.height)
			abort();
		image_raw_free(&raw);
	}
	return 0;
}
