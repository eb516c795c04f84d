/*
 * log.c — see log.h. The component name and level are process-wide and set
 * once at start; a line is formatted into a stack buffer and written with one
 * write(2) so lines from threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "atelier";
static enum log_level log_level = LOG_INFO;
static int log_json;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static __thread log_tap_fn thread_tap;
static __thread void *thread_tap_arg;
static __thread int in_tap;

void log_set_thread_tap(log_tap_fn fn, void *arg)
{
	thread_tap = fn;
	thread_tap_arg = arg;
}

const char *log_level_name(enum log_level level) { return level_names[level]; }

void log_init(const char *component)
{
	log_component = component;
	const char *lv = getenv("ATELIER_LOG_LEVEL");
	if (lv)
		for (int i = 0; i < 4; i++)
			if (strcmp(lv, level_names[i]) == 0)
				log_level = (enum log_level)i;
	const char *fmt = getenv("ATELIER_LOG_FORMAT");
	log_json = fmt && strcmp(fmt, "json") == 0;
}

void log_set_level(enum log_level level) { log_level = level; }

int log_enabled(enum log_level level) { return level >= log_level; }

static size_t json_escape_into(char *dst, size_t cap, const char *src)
{
	size_t n = 0;
	for (; *src && n + 7 < cap; src++) {
		unsigned char c = (unsigned char)*src;
		if (c == '"' || c == '\\') {
			dst[n++] = '\\';
			dst[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", c);
		} else {
			dst[n++] = (char)c;
		}
	}
	dst[n] = 0;
	return n;
}

void log_write(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

	char line[4608];
	int n;
	if (log_json) {
		char esc[4200];
		json_escape_into(esc, sizeof esc, msg);
		n = snprintf(line, sizeof line,
			     "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"%s\"}\n", when,
			     level_names[level], log_component, esc);
	} else {
		n = snprintf(line, sizeof line, "%s %-5s %s: %s\n", when, level_names[level], log_component, msg);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = sizeof line - 1;
	ssize_t r = write(STDERR_FILENO, line, (size_t)n);
	(void)r;
	if (thread_tap && !in_tap) {
		in_tap = 1;
		thread_tap(thread_tap_arg, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, level, msg);
		in_tap = 0;
	}
}
