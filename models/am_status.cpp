/*
 * am_status.cpp — the status out-parameter and the exception boundary.
 *
 * Every exported function catches everything and turns it into a code and a
 * message here, so no C++ exception ever reaches C callers.
 */
#include <new>
#include <stdexcept>

#include <c10/util/Exception.h>

#include "am_internal.hpp"
#include "err.h"

extern "C" am_status_t *am_status_new(void) { return new (std::nothrow) am_status(); }

extern "C" void am_status_free(am_status_t *st) { delete st; }

extern "C" int am_status_code(const am_status_t *st) { return st ? st->code : 0; }

extern "C" const char *am_status_message(const am_status_t *st) { return st ? st->msg.c_str() : ""; }

int am_fail(am_status_t *st, int code, const std::string &msg)
{
	if (st) {
		st->code = code;
		try {
			st->msg = msg;
		} catch (...) {
			/* Out of memory while reporting: keep the code, drop the text. */
			st->msg.clear();
		}
	}
	return code;
}

int am_ok(am_status_t *st)
{
	if (st) {
		st->code = 0;
		st->msg.clear();
	}
	return 0;
}

int am_fail_current_exception(am_status_t *st, const char *what)
{
	std::string prefix = what ? std::string(what) + ": " : std::string();
	try {
		throw;
	} catch (const std::bad_alloc &) {
		return am_fail(st, AT_ENOMEM, prefix + "out of memory");
	} catch (const c10::Error &e) {
		/* what() carries a C++ backtrace in libtorch 1.13; the short form is
		 * what a log line or an HTTP error detail can hold. */
		std::string m = e.what_without_backtrace();
		if (m.find("out of memory") != std::string::npos)
			return am_fail(st, AT_ENOMEM, prefix + m);
		return am_fail(st, AT_EINTERNAL, prefix + m);
	} catch (const std::exception &e) {
		return am_fail(st, AT_EINTERNAL, prefix + e.what());
	} catch (...) {
		return am_fail(st, AT_EINTERNAL, prefix + "unknown exception");
	}
}
