/*
 * am_internal.hpp — what the shim's translation units share, without torch:
 * the status object, the config table's comparisons and the file format.
 * Torch-dependent internals live in munit.hpp.
 */
#ifndef ATELIER_AM_INTERNAL_HPP
#define ATELIER_AM_INTERNAL_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "atelier_model.h"

struct am_status {
	int code = 0;
	std::string msg;
};

/* Records code and message in st (when not NULL) and returns code. */
int am_fail(am_status_t *st, int code, const std::string &msg);
/* Clears st; returns 0. */
int am_ok(am_status_t *st);
/*
 * Classifies the exception being handled (call inside catch (...)): c10
 * errors -> AT_EINTERNAL with libtorch's message (no backtrace), bad_alloc ->
 * AT_ENOMEM. what is prefixed to the message.
 */
int am_fail_current_exception(am_status_t *st, const char *what);

/* ---- config (am_config.cpp) ---- */

/*
 * Empty when a and b have equal [arch] fields, else a message naming the
 * first difference ("gen_dim is 8 in the file, 16 here"). with_dis=false
 * skips the discriminator's fields (serving exports have none).
 */
std::string am_config_arch_diff(const am_config *file, const am_config *here, bool with_dis);
/* Parses a JSON object into a config starting from the defaults. */
int am_config_parse_strict(const char *json, am_config *cfg, am_status_t *st);

/* ---- files (am_file.cpp) ---- */

enum am_file_kind { AM_FILE_CHECKPOINT, AM_FILE_MODEL };

/* Called with a sink; writes the payload through it. May throw. */
typedef std::function<size_t(const void *, size_t)> am_sink;
typedef std::function<void(const am_sink &)> am_payload_writer;

/*
 * Writes header + config JSON + payload to path atomically (temp file in the
 * same folder, fsync, rename, fsync of the folder). On any failure the
 * temp file is removed and path is untouched.
 */
int am_file_write(const char *path, am_file_kind kind, const std::string &config_json, const am_payload_writer &payload,
		  am_status_t *st);

/*
 * Reads and checks a file of the given kind: magic, version, sizes (a
 * truncated or padded file is corrupt), sha256. On success *data holds the
 * whole file and [*payload_off, +*payload_len) is the payload.
 */
int am_file_read(const char *path, am_file_kind kind, std::string *config_json, std::string *data, size_t *payload_off,
		 size_t *payload_len, am_status_t *st);
/* The checks of am_file_read on a file already in memory (name is for messages). */
int am_file_parse(const char *name, am_file_kind kind, const std::string &data, std::string *config_json,
		  size_t *payload_off, size_t *payload_len, am_status_t *st);
/* Which kind a file is (by magic) without checking the rest: 0 ok, else AT_E*. */
int am_file_peek_kind(const char *path, am_file_kind *kind, am_status_t *st);

#endif
