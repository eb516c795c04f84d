/*
 * log.h — structured logging with levels.
 *
 * One line per event on stderr: time, level, component, message, then
 * key=value pairs the caller formats into the message. ATELIER_LOG_LEVEL
 * (debug|info|warn|error) or log_set_level() filters. ATELIER_LOG_FORMAT=json
 * writes one JSON object per line instead. Thread-safe (one write(2) a line).
 */
#ifndef ATELIER_LOG_H
#define ATELIER_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *component);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A per-thread tap: while set, every line this thread logs (and that passes
 * the level filter) is also handed to fn, with the time (epoch ms), level
 * and message. fn runs on the logging thread, must not block on I/O and must
 * not log (a line it logs is not tapped again). NULL clears it. workers/joblog.c
 * uses it to ship a job's lines to PostgreSQL. */
typedef void (*log_tap_fn)(void *arg, long long epoch_ms, enum log_level level, const char *msg);
void log_set_thread_tap(log_tap_fn fn, void *arg);
const char *log_level_name(enum log_level level);

#define log_debug(...)                                     \
	do {                                               \
		if (log_enabled(LOG_DEBUG))                \
			log_write(LOG_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
