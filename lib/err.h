/*
 * err.h — the one error convention of Atelier.
 *
 * Every fallible function returns 0 on success or a negative AT_E* code from
 * the table below; at_strerror() names it. A function that fails never invokes
 * its callback. Codes' numbers are stable within a process only; on the wire
 * an error is its name ("TOOBIG": the "code" of an HTTP error body) and its
 * HTTP status is the table's, always: a handler passes the code to
 * http_reply_err() and never a status (tests/test_errors.py checks both).
 * `atelierd errors --json` prints the table.
 */
#ifndef ATELIER_ERR_H
#define ATELIER_ERR_H

#define AT_MUST_CHECK __attribute__((warn_unused_result))

/* X(name, http status, message) */
#define AT_ERRNO_MAP(X)                                                     \
	X(NOMEM, 503, "out of memory")                                      \
	X(INVAL, 400, "invalid argument")                                   \
	X(IO, 500, "i/o error")                                             \
	X(DB, 503, "database error")                                        \
	X(NOTFOUND, 404, "not found")                                       \
	X(EXISTS, 409, "already exists")                                    \
	X(CONFLICT, 409, "conflict")                                        \
	X(TOOBIG, 413, "too large")                                         \
	X(UNSUPPORTED, 415, "unsupported media type")                       \
	X(CORRUPT, 422, "corrupt or unreadable data")                       \
	X(UNPROCESSABLE, 422, "unprocessable content")                      \
	X(PARSE, 400, "parse error")                                        \
	X(UNAUTHORIZED, 401, "missing or invalid token")                    \
	X(FORBIDDEN, 403, "forbidden")                                      \
	X(TIMEOUT, 504, "timed out")                                        \
	X(CANCELLED, 409, "cancelled")                                      \
	X(UNAVAILABLE, 503, "unavailable")                                  \
	X(RANGE, 400, "value out of range")                                 \
	X(STALE, 409, "stale owner token")                                  \
	X(INTERNAL, 500, "internal error")                                  \
	X(METHOD, 405, "method not allowed")                                \
	X(URITOOLONG, 414, "request path too long")                         \
	X(UNSATISFIABLE, 416, "range not satisfiable")                      \
	X(BUSY, 503, "busy: try again later")                               \
	X(NOTREADY, 503, "not ready")                                       \
	X(REQTIMEOUT, 408, "request timed out: the client stopped sending") \
	X(RATELIMITED, 429, "too many requests: slow down")

enum at_err {
	AT_OK = 0,
#define AT_ERR_ENUM(name, status, msg) AT_E##name,
	AT_ERR_FIRST_ = -1000,
	AT_ERRNO_MAP(AT_ERR_ENUM)
#undef AT_ERR_ENUM
		AT_ERR_LAST_
};
/* Codes in the table; at_err_index() maps a code to 0..AT_ERR_COUNT-1. */
#define AT_ERR_COUNT (AT_ERR_LAST_ - AT_ERR_FIRST_ - 1)

/* Message for a code; never NULL (unknown codes get a generic text). */
const char *at_strerror(int err);
/* Short symbolic name ("NOTFOUND"); never NULL. */
const char *at_err_name(int err);
/* The HTTP status that best answers a request that failed with err. */
int at_err_http_status(int err);
/* err's row in the table (0..AT_ERR_COUNT-1), or -1 when err is not in it. */
int at_err_index(int err);

#endif
