/*
 * artifact_impl.h — what a back end of the artifact store implements
 * (artifact.h is the interface callers see). lib/artifact.c checks the
 * arguments (a valid sha, a sane range) and dispatches through the ops table;
 * each back end file (artifact_fs.c, artifact_s3.c) fills one table and one
 * open function, and keeps its state after the common header.
 */
#ifndef ATELIER_ARTIFACT_IMPL_H
#define ATELIER_ARTIFACT_IMPL_H

#include "artifact.h"

struct artifact_ops {
	void (*close)(struct artifact_store *s);
	int (*put_file)(struct artifact_store *s, const char *src, char sha[65], uint64_t *size);
	int (*put_bytes)(struct artifact_store *s, const void *data, size_t len, char sha[65]);
	int (*path)(const struct artifact_store *s, const char *sha, char *path, size_t len); /* NULL: remote */
	int (*uri)(const struct artifact_store *s, const char *sha, char *uri, size_t len);
	int (*stat)(const struct artifact_store *s, const char *sha, uint64_t *size);
	int (*get_file)(const struct artifact_store *s, const char *sha, const char *dst);
	int (*read_range)(const struct artifact_store *s, const char *sha, uint64_t start, uint64_t end,
			  artifact_sink_fn fn, void *arg);
	int (*list)(const struct artifact_store *s, int (*fn)(const struct artifact_info *, void *), void *arg);
	int (*del)(struct artifact_store *s, const char *sha);
	int (*presign)(const struct artifact_store *s, const char *sha, int ttl_s, char *url, size_t len); /* NULL */
};

/* The first member of every back end's store struct. */
struct artifact_store {
	const struct artifact_ops *ops;
	char uri[3100];
};

int artifact_fs_open(const char *path, struct artifact_store **out);
int artifact_s3_open(const char *bucket_prefix, struct artifact_store **out);

#endif
