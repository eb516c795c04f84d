/*
 * artifact.c — the artifact store's front: picks the back end by the URI's
 * scheme, checks arguments once for all back ends, and dispatches (see
 * artifact.h; the back ends are artifact_fs.c and artifact_s3.c).
 */
#include "artifact.h"

#include <string.h>

#include "artifact_impl.h"

int artifact_store_open(const char *uri, struct artifact_store **out)
{
	if (!uri || !*uri)
		uri = "fs://var/artifacts";
	if (strlen(uri) >= 3000)
		return AT_EINVAL;
	if (strncmp(uri, "s3://", 5) == 0)
		return artifact_s3_open(uri + 5, out);
	if (strstr(uri, "://") && strncmp(uri, "fs://", 5) != 0)
		return AT_EUNSUPPORTED;
	return artifact_fs_open(strncmp(uri, "fs://", 5) == 0 ? uri + 5 : uri, out);
}

void artifact_store_close(struct artifact_store *s)
{
	if (s)
		s->ops->close(s);
}

const char *artifact_store_uri(const struct artifact_store *s) { return s->uri; }
int artifact_store_is_local(const struct artifact_store *s) { return s->ops->path != NULL; }

int artifact_valid_sha(const char *h)
{
	if (!h || strlen(h) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return 0;
	return 1;
}

int artifact_put_file(struct artifact_store *s, const char *src, char sha[65], uint64_t *size)
{
	return s->ops->put_file(s, src, sha, size);
}

int artifact_put_bytes(struct artifact_store *s, const void *data, size_t len, char sha[65])
{
	return s->ops->put_bytes(s, data, len, sha);
}

int artifact_path(const struct artifact_store *s, const char *sha, char *path, size_t len)
{
	if (!artifact_valid_sha(sha))
		return AT_EINVAL;
	if (!s->ops->path)
		return AT_EUNSUPPORTED;
	return s->ops->path(s, sha, path, len);
}

int artifact_uri(const struct artifact_store *s, const char *sha, char *uri, size_t len)
{
	if (!artifact_valid_sha(sha))
		return AT_EINVAL;
	return s->ops->uri(s, sha, uri, len);
}

int artifact_stat(const struct artifact_store *s, const char *sha, uint64_t *size)
{
	if (!artifact_valid_sha(sha))
		return AT_EINVAL;
	return s->ops->stat(s, sha, size);
}

int artifact_exists(const struct artifact_store *s, const char *sha)
{
	uint64_t size;
	return artifact_stat(s, sha, &size) == 0;
}

int artifact_get_file(const struct artifact_store *s, const char *sha, const char *dst)
{
	if (!artifact_valid_sha(sha))
		return AT_EINVAL;
	return s->ops->get_file(s, sha, dst);
}

int artifact_read_range(const struct artifact_store *s, const char *sha, uint64_t start, uint64_t end,
			artifact_sink_fn fn, void *arg)
{
	if (!artifact_valid_sha(sha) || end < start)
		return AT_EINVAL;
	return s->ops->read_range(s, sha, start, end, fn, arg);
}

int artifact_list(const struct artifact_store *s, int (*fn)(const struct artifact_info *, void *), void *arg)
{
	return s->ops->list(s, fn, arg);
}

int artifact_delete(struct artifact_store *s, const char *sha)
{
	if (!artifact_valid_sha(sha))
		return AT_EINVAL;
	return s->ops->del(s, sha);
}

int artifact_presign(const struct artifact_store *s, const char *sha, int ttl_s, char *url, size_t len)
{
	if (!artifact_valid_sha(sha) || ttl_s < 1 || ttl_s > 7 * 86400)
		return AT_EINVAL;
	if (!s->ops->presign)
		return AT_EUNSUPPORTED;
	return s->ops->presign(s, sha, ttl_s, url, len);
}
