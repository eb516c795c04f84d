/*
 * am_model.cpp — the serving side: load a serving export, stylize, style
 * codes, reconstruction error; and the process-wide settings (threads,
 * device name).
 *
 * An am_model is immutable after am_model_load, and every call runs under
 * NoGradGuard (thread-local), so several threads may stylize with one model.
 */
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "munit.hpp"
#include "err.h"

struct am_model {
	am_config cfg;
	torch::Device device{torch::kCPU};
	am::ContentEncoder enc_a{nullptr};
	am::Generator gen_b{nullptr};
};

/* ---- process-wide ---- */

extern "C" int am_set_threads(int n, am_status_t *st)
{
	if (n < 1 || n > 1024)
		return am_fail(st, AT_ERANGE, "threads " + std::to_string(n) + " is outside 1..1024");
	try {
		at::set_num_threads(n);
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "set threads");
	}
}

extern "C" void am_set_fast_paths(int on) { am::set_fast_paths(on != 0); }

extern "C" const char *am_device_name(void)
{
	static std::once_flag once;
	static char name[64] = "cpu";
	std::call_once(once, [] {
		try {
			if (torch::cuda::is_available())
				snprintf(name, sizeof name, "cuda:0 (%d devices)", (int)torch::cuda::device_count());
		} catch (...) {
		}
	});
	return name;
}

/* ---- loading ---- */

static am_model *model_load(const char *path, const char *device_pref, am_status_t *st)
{
	auto m = std::make_unique<am_model>();
	if (am::pick_device(device_pref, &m->device, st) < 0)
		return nullptr;
	torch::serialize::InputArchive ar;
	if (am::open_archive(path, AM_FILE_MODEL, m->device, ar, &m->cfg, st) < 0)
		return nullptr;
	snprintf(m->cfg.device, sizeof m->cfg.device, "%s", m->device.is_cuda() ? "cuda" : "cpu");
	auto ga = am::Generator(m->cfg, 1);
	m->enc_a = ga->enc_content;
	m->gen_b = am::Generator(m->cfg, 3);
	m->enc_a->to(m->device);
	m->gen_b->to(m->device);
	try {
		am::load_module(ar, "gen_a.enc_content.", *m->enc_a);
		am::load_module(ar, "gen_b.", *m->gen_b);
	} catch (const am::format_error &e) {
		am_fail(st, AT_ECORRUPT, std::string(path) + ": " + e.what());
		return nullptr;
	} catch (const c10::Error &e) {
		am_fail(st, AT_ECORRUPT, std::string(path) + ": " + e.what_without_backtrace());
		return nullptr;
	}
	m->enc_a->eval();
	m->gen_b->eval();
	for (auto &p : m->enc_a->parameters())
		p.set_requires_grad(false);
	for (auto &p : m->gen_b->parameters())
		p.set_requires_grad(false);
	am_ok(st);
	return m.release();
}

extern "C" am_model *am_model_load(const char *path, const char *device_pref, am_status_t *st)
{
	try {
		return model_load(path, device_pref, st);
	} catch (...) {
		am_fail_current_exception(st, "loading a model");
		return nullptr;
	}
}

extern "C" void am_model_free(am_model *m)
{
	try {
		delete m;
	} catch (...) {
	}
}

extern "C" void am_model_get_config(const am_model *m, am_config *out)
{
	if (m && out)
		*out = m->cfg;
}

extern "C" const char *am_model_device(const am_model *m) { return m ? am::device_label(m->device) : "cpu"; }

/* ---- inference ---- */

extern "C" int am_model_stylize(am_model *m, const uint8_t *gray, int w, int h, const am_style *style, uint8_t *rgb_out,
				int out_w, int out_h, am_status_t *st)
{
	if (!m)
		return am_fail(st, AT_EINVAL, "model is NULL");
	try {
		am::Translator tr{&m->cfg, m->device, m->enc_a, m->gen_b};
		return am::stylize(tr, gray, w, h, style, rgb_out, out_w, out_h, st);
	} catch (...) {
		return am_fail_current_exception(st, "stylize");
	}
}

extern "C" int am_model_style_code(am_model *m, const am_style *style, float *code, int code_len, am_status_t *st)
{
	if (!m || !code)
		return am_fail(st, AT_EINVAL, "NULL argument");
	if (code_len < m->cfg.style_dim)
		return am_fail(st, AT_EINVAL,
			       "code_len " + std::to_string(code_len) + " < style_dim " +
				       std::to_string(m->cfg.style_dim));
	try {
		torch::NoGradGuard ng;
		am::Translator tr{&m->cfg, m->device, m->enc_a, m->gen_b};
		auto c = am::style_code(tr, style, 0).to(torch::kCPU).contiguous();
		memcpy(code, c.data_ptr<float>(), sizeof(float) * (size_t)m->cfg.style_dim);
		return am_ok(st);
	} catch (const am::arg_error &e) {
		return am_fail(st, AT_EINVAL, e.what());
	} catch (...) {
		return am_fail_current_exception(st, "style code");
	}
}

extern "C" int am_model_recon_error(am_model *m, const uint8_t *rgb, int w, int h, double *err, am_status_t *st)
{
	if (!m || !err)
		return am_fail(st, AT_EINVAL, "NULL argument");
	int rc = am::check_image_args(rgb, w, h, st);
	if (rc < 0)
		return rc;
	try {
		torch::NoGradGuard ng;
		int s = m->cfg.image_size;
		auto x = am::resize(am::image_to_tensor(rgb, w, h, 3, m->device), s, s);
		auto e = m->gen_b->encode(x);
		auto y = m->gen_b->decode(e.c, e.stats, e.s);
		/* [-1, 1] units halved: mean absolute error in [0, 1] of the pixel range. */
		*err = (y - x).abs().mean().item<double>() / 2.0;
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "reconstruction error");
	}
}
