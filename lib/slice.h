/*
 * slice.h — the slices of a holdout set: which part of the data an image
 * came from, decided by its images.source. The one list (SLICE_MAP) serves
 * evaluate (scores per slice), the pipeline YAML (a gate rule's `slice:` must
 * name one) and the docs.
 *
 * Sources in use: "synth" (`atelier synth`), "node:NAME" (a drawing sent
 * by a serving node's page), "photo..." (a photo uploaded to extract a
 * sketch from), "import..." or "api" (`atelier import` and plain API uploads,
 * whose source defaults to "api").
 */
#ifndef ATELIER_SLICE_H
#define ATELIER_SLICE_H

/* X(ENUM, "name", "sources it holds") */
#define SLICE_MAP(X)                                                                             \
	X(SYNTH, "synth", "source `synth` (`atelier synth`)")                                    \
	X(CONTRIBUTIONS, "contributions", "source `node:NAME` (drawn on a serving node's page)") \
	X(IMPORTS, "imports", "source `api` or `import...` (`atelier import`, API uploads)")     \
	X(PHOTO, "photo", "source `photo...` (sketches extracted from photos)")                  \
	X(OTHER, "other", "any other source")

enum slice {
#define SLICE_ENUM(e, name, doc) SLICE_##e,
	SLICE_MAP(SLICE_ENUM)
#undef SLICE_ENUM
		SLICE_COUNT_
};

/* The slice of an image with this source (NULL or "" counts as "api"). */
enum slice slice_of_source(const char *source);
/* "synth", ...; NULL past the end. */
const char *slice_name(int s);
/* The slice called name, or -1. */
int slice_from_name(const char *name);

#endif
