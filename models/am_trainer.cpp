/*
 * am_trainer.cpp — MUNIT training between A = sketch and B = painting:
 * two generators, two discriminators, two Adam optimisers, checkpoints,
 * serving exports and warm starts.
 *
 * One step (MUNIT_Trainer's dis_update then gen_update, sharing one
 * generator forward pass instead of running the generators twice):
 *   1. encode x_a, x_b; decode within domain (x_a_recon, x_b_recon) and
 *      across with random styles s_a, s_b (x_ba, x_ab);
 *   2. discriminators: LSGAN loss on detached x_ba / x_ab vs x_a / x_b, step;
 *   3. generators: re-encode the translations (content and style
 *      reconstruction), decode them back with the original styles (cycle),
 *      adversarial loss against the updated discriminators, step.
 * The discriminators' parameters stop requiring grad during 3 so the
 * generator backward pass does not compute gradients nobody uses.
 *
 * With ema_decay > 0 the trainer also keeps an exponential moving average
 * of both generators' weights (ema_a, ema_b), updated after every generator
 * step; exports and am_trainer_stylize use the average, checkpoints carry it
 * (a resumed run continues the same average). A GAN's weights at one step
 * swing with the discriminator; their average is the model that step's
 * neighbourhood agrees on (the usual practice for GAN generators).
 *
 * Randomness comes from one CPU generator per trainer (seeded by cfg.seed)
 * used for weight init and style sampling, saved in checkpoints: a resumed
 * run repeats the steps the original would have taken.
 */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <sstream>
#include <type_traits>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>

#include "munit.hpp"
#include "err.h"

using am::Discriminator;
using am::Generator;

struct am_trainer {
	am_config cfg;
	torch::Device device{torch::kCPU};
	Generator gen_a{nullptr}, gen_b{nullptr};
	Discriminator dis_a{nullptr}, dis_b{nullptr};
	Generator ema_a{nullptr}, ema_b{nullptr}; /* set when cfg.ema_decay > 0 */
	std::unique_ptr<torch::optim::Adam> opt_gen, opt_dis;
	at::Generator rng;
	uint64_t step = 0;
	am::TrainerDist dist; /* world 1 unless am_dist_attach */
};

/* ---- construction ---- */

static std::vector<torch::Tensor> params_of(torch::nn::Module &a, torch::nn::Module &b)
{
	auto p = a.parameters();
	auto q = b.parameters();
	p.insert(p.end(), q.begin(), q.end());
	return p;
}

/* dst's parameters and buffers := src's (same architecture). */
static void copy_weights(torch::nn::Module &dst, torch::nn::Module &src)
{
	torch::NoGradGuard ng;
	auto d = dst.parameters(), s = src.parameters();
	for (size_t j = 0; j < d.size(); j++)
		d[j].copy_(s[j]);
	auto db = dst.buffers(), sb = src.buffers();
	for (size_t j = 0; j < db.size(); j++)
		db[j].copy_(sb[j]);
}

/* The averages restart from the live generators (new trainer, warm start). */
static void ema_reset(am_trainer *t)
{
	if (!t->ema_a)
		return;
	copy_weights(*t->ema_a, *t->gen_a);
	copy_weights(*t->ema_b, *t->gen_b);
}

/* ema := d * ema + (1 - d) * live, d warmed up so that early steps, whose
 * weights are far from where training goes, do not linger in the average. */
static void ema_update(am_trainer *t)
{
	if (!t->ema_a)
		return;
	double k = (double)t->step;
	double d = std::min(t->cfg.ema_decay, (1.0 + k) / (10.0 + k));
	torch::NoGradGuard ng;
	for (auto pair : {std::make_pair(&t->ema_a, &t->gen_a), std::make_pair(&t->ema_b, &t->gen_b)}) {
		auto e = (*pair.first)->parameters(), p = (*pair.second)->parameters();
		for (size_t j = 0; j < e.size(); j++)
			e[j].lerp_(p[j], 1.0 - d);
		auto eb = (*pair.first)->buffers(), pb = (*pair.second)->buffers();
		for (size_t j = 0; j < eb.size(); j++)
			eb[j].copy_(pb[j]);
	}
}

static void build(am_trainer *t)
{
	const am_config &c = t->cfg;
	t->rng = at::make_generator<at::CPUGeneratorImpl>(c.seed);
	t->gen_a = Generator(c, 1);
	t->gen_b = Generator(c, 3);
	t->dis_a = Discriminator(c, 1);
	t->dis_b = Discriminator(c, 3);
	/* Initialised on the CPU from the trainer's generator, so the same seed
	 * gives the same weights on every device. */
	am::init_kaiming(*t->gen_a, t->rng);
	am::init_kaiming(*t->gen_b, t->rng);
	am::init_gaussian(*t->dis_a, t->rng);
	am::init_gaussian(*t->dis_b, t->rng);
	t->gen_a->to(t->device);
	t->gen_b->to(t->device);
	t->dis_a->to(t->device);
	t->dis_b->to(t->device);
	if (c.ema_decay > 0) {
		t->ema_a = Generator(c, 1);
		t->ema_b = Generator(c, 3);
		t->ema_a->to(t->device);
		t->ema_b->to(t->device);
		for (auto *g : {&t->ema_a, &t->ema_b})
			for (auto &p : (*g)->parameters())
				p.set_requires_grad(false);
		ema_reset(t);
	}
	auto opts =
		torch::optim::AdamOptions(c.lr).betas(std::make_tuple(c.beta1, c.beta2)).weight_decay(c.weight_decay);
	t->opt_gen = std::make_unique<torch::optim::Adam>(params_of(*t->gen_a, *t->gen_b), opts);
	t->opt_dis = std::make_unique<torch::optim::Adam>(params_of(*t->dis_a, *t->dis_b), opts);
}

static am_trainer *trainer_new(const am_config *cfg, const char *device_pref, am_status_t *st)
{
	if (am_config_validate(cfg, st) < 0)
		return nullptr;
	auto t = std::make_unique<am_trainer>();
	t->cfg = *cfg;
	if (am::pick_device(device_pref ? device_pref : cfg->device, &t->device, st) < 0)
		return nullptr;
	if (cfg->threads > 0 && am_set_threads(cfg->threads, st) < 0)
		return nullptr;
	build(t.get());
	am_ok(st);
	return t.release();
}

extern "C" am_trainer *am_trainer_new(const am_config *cfg, am_status_t *st)
{
	try {
		return trainer_new(cfg, nullptr, st);
	} catch (...) {
		am_fail_current_exception(st, "creating the trainer");
		return nullptr;
	}
}

extern "C" void am_trainer_free(am_trainer *t)
{
	try {
		delete t;
	} catch (...) {
	}
}

extern "C" uint64_t am_trainer_steps(const am_trainer *t) { return t ? t->step : 0; }

extern "C" void am_trainer_get_config(const am_trainer *t, am_config *out)
{
	if (t && out)
		*out = t->cfg;
}

/* ---- one step ---- */

static void zero_grads(torch::optim::Optimizer &opt)
{
	/* set_to_none: no memset, and the next backward writes instead of adding. */
	for (auto &g : opt.param_groups())
		for (auto &p : g.params())
			p.mutable_grad() = torch::Tensor();
}

static void set_requires_grad(torch::nn::Module &m, bool on)
{
	for (auto &p : m.parameters())
		p.set_requires_grad(on);
}

static void set_lr(am_trainer *t)
{
	const am_config &c = t->cfg;
	double lr = c.lr * std::pow(c.lr_gamma, (double)(t->step / (uint64_t)c.lr_step_size));
	for (auto *opt : {t->opt_gen.get(), t->opt_dis.get()})
		for (auto &g : opt->param_groups())
			static_cast<torch::optim::AdamOptions &>(g.options()).lr(lr);
}

/* Every rank's gradients replaced by their mean (a no-op alone). */
static void reduce_grads(am_trainer *t, torch::optim::Optimizer &opt)
{
	if (!t->dist.mean)
		return;
	std::vector<torch::Tensor> g;
	for (auto &p : opt.param_groups()[0].params())
		if (p.grad().defined())
			g.push_back(p.mutable_grad());
	t->dist.mean(g);
}

static torch::Tensor l1(const torch::Tensor &a, const torch::Tensor &b) { return (a - b).abs().mean(); }

static int check_batch(const am_trainer *t, const float *xa, const float *xb, int batch, am_status_t *st)
{
	if (!t || !xa || !xb)
		return am_fail(st, AT_EINVAL, "NULL argument");
	if (batch < 1 || batch > 4096)
		return am_fail(st, AT_ERANGE, "batch " + std::to_string(batch) + " is outside 1..4096");
	return 0;
}

static void trainer_step(am_trainer *t, const float *sk, const float *pa, int batch, am_losses *out)
{
	const am_config &c = t->cfg;
	int64_t s = c.image_size, b = batch;
	auto x_a = torch::from_blob(const_cast<float *>(sk), {b, 1, s, s}, torch::kFloat).to(t->device);
	auto x_b = torch::from_blob(const_cast<float *>(pa), {b, 3, s, s}, torch::kFloat).to(t->device);
	/* randn locks the generator itself (its mutex is not recursive). */
	/* A rank draws the combined batch's codes and keeps its slice: the same
	 * codes as one process on the combined batch, and the same RNG state on
	 * every rank. */
	int64_t w = t->dist.world, off = (int64_t)t->dist.rank * b;
	auto s_a = torch::randn({b * w, c.style_dim}, t->rng, torch::kFloat).narrow(0, off, b).to(t->device);
	auto s_b = torch::randn({b * w, c.style_dim}, t->rng, torch::kFloat).narrow(0, off, b).to(t->device);
	set_lr(t);

	/* 1. generators forward */
	auto e_a = t->gen_a->encode(x_a);
	auto e_b = t->gen_b->encode(x_b);
	auto x_a_recon = t->gen_a->decode(e_a.c, e_a.stats, e_a.s);
	auto x_b_recon = t->gen_b->decode(e_b.c, e_b.stats, e_b.s);
	/* Translations keep the source's PONO moments: structure comes from the source. */
	auto x_ba = t->gen_a->decode(e_b.c, e_b.stats, s_a);
	auto x_ab = t->gen_b->decode(e_a.c, e_a.stats, s_b);

	/* 2. discriminators */
	set_requires_grad(*t->dis_a, true);
	set_requires_grad(*t->dis_b, true);
	auto d_a = t->dis_a->dis_loss(x_ba.detach(), x_a);
	auto d_b = t->dis_b->dis_loss(x_ab.detach(), x_b);
	auto dis_total = c.gan_w * (d_a + d_b);
	zero_grads(*t->opt_dis);
	dis_total.backward();
	reduce_grads(t, *t->opt_dis);
	t->opt_dis->step();
	set_requires_grad(*t->dis_a, false);
	set_requires_grad(*t->dis_b, false);

	/* 3. generators */
	auto r_ba = t->gen_a->encode(x_ba); /* content of b, style s_a */
	auto r_ab = t->gen_b->encode(x_ab); /* content of a, style s_b */
	auto zero = torch::zeros({}, x_a.options());
	torch::Tensor cyc_a = zero, cyc_b = zero;
	if (c.recon_x_cyc_w > 0) {
		cyc_a = l1(t->gen_a->decode(r_ab.c, r_ab.stats, e_a.s), x_a);
		cyc_b = l1(t->gen_b->decode(r_ba.c, r_ba.stats, e_b.s), x_b);
	}
	auto rx_a = l1(x_a_recon, x_a), rx_b = l1(x_b_recon, x_b);
	auto rs_a = l1(r_ba.s, s_a), rs_b = l1(r_ab.s, s_b);
	auto rc_a = l1(r_ab.c, e_a.c), rc_b = l1(r_ba.c, e_b.c);
	auto adv_a = t->dis_a->gen_loss(x_ba), adv_b = t->dis_b->gen_loss(x_ab);
	auto gen_total = c.gan_w * (adv_a + adv_b) + c.recon_x_w * (rx_a + rx_b) + c.recon_s_w * (rs_a + rs_b) +
			 c.recon_c_w * (rc_a + rc_b) + c.recon_x_cyc_w * (cyc_a + cyc_b);
	zero_grads(*t->opt_gen);
	gen_total.backward();
	reduce_grads(t, *t->opt_gen);
	t->opt_gen->step();
	t->step++;
	ema_update(t);

	if (out) {
		/* One device -> host copy for all the figures. */
		auto v = torch::stack({gen_total, dis_total, adv_a, adv_b, rx_a, rx_b, rs_a, rs_b, rc_a, rc_b, cyc_a,
				       cyc_b, d_a, d_b})
				 .detach()
				 .to(torch::kCPU, torch::kDouble);
		if (t->dist.mean) {
			std::vector<torch::Tensor> l{v};
			t->dist.mean(l);
		}
		auto p = v.accessor<double, 1>();
		double *dst[] = {&out->gen_total, &out->dis_total, &out->gen_adv_a, &out->gen_adv_b, &out->recon_x_a,
				 &out->recon_x_b, &out->recon_s_a, &out->recon_s_b, &out->recon_c_a, &out->recon_c_b,
				 &out->cyc_x_a,   &out->cyc_x_b,   &out->dis_a,     &out->dis_b};
		for (int i = 0; i < 14; i++)
			*dst[i] = p[i];
		out->step = t->step;
	}
}

extern "C" int am_trainer_step(am_trainer *t, const float *sketch_batch, const float *painting_batch, int batch,
			       am_losses *out, am_status_t *st)
{
	int rc = check_batch(t, sketch_batch, painting_batch, batch, st);
	if (rc < 0)
		return rc;
	try {
		trainer_step(t, sketch_batch, painting_batch, batch, out);
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "training step");
	}
}

/* ---- checkpoints, exports, warm starts ---- */

static const char *kNets[] = {"gen_a.", "gen_b.", "dis_a.", "dis_b."};

static torch::nn::Module &net(am_trainer *t, int i)
{
	switch (i) {
	case 0: return *t->gen_a;
	case 1: return *t->gen_b;
	case 2: return *t->dis_a;
	default: return *t->dis_b;
	}
}

/*
 * The optimiser's state map is keyed by the parameter's TensorImpl: as its
 * address in text in libtorch 1.x, as the pointer itself in later releases.
 */
template <typename Map> static typename Map::key_type state_key(const Map &, const torch::Tensor &p)
{
	if constexpr (std::is_same<typename Map::key_type, std::string>::value) {
		std::ostringstream os;
		os << p.unsafeGetTensorImpl();
		return os.str();
	} else {
		return (typename Map::key_type)p.unsafeGetTensorImpl();
	}
}

/* Adam's per-parameter state, keyed by the parameter's position. */
static void save_adam(torch::serialize::OutputArchive &ar, const std::string &prefix, torch::optim::Adam &opt)
{
	auto &state = opt.state();
	auto &params = opt.param_groups()[0].params();
	for (size_t i = 0; i < params.size(); i++) {
		auto it = state.find(state_key(state, params[i]));
		if (it == state.end())
			continue;
		auto &s = static_cast<torch::optim::AdamParamState &>(*it->second);
		std::string k = prefix + std::to_string(i) + ".";
		ar.write(am::key_of(k + "step"), torch::tensor((int64_t)s.step()));
		ar.write(am::key_of(k + "exp_avg"), s.exp_avg());
		ar.write(am::key_of(k + "exp_avg_sq"), s.exp_avg_sq());
	}
}

static void load_adam(torch::serialize::InputArchive &ar, const std::string &prefix, torch::optim::Adam &opt)
{
	auto &state = opt.state();
	state.clear();
	auto &params = opt.param_groups()[0].params();
	for (size_t i = 0; i < params.size(); i++) {
		std::string k = prefix + std::to_string(i) + ".";
		torch::Tensor step, m, v;
		if (!ar.try_read(am::key_of(k + "step"), step))
			continue;
		if (!ar.try_read(am::key_of(k + "exp_avg"), m) || !ar.try_read(am::key_of(k + "exp_avg_sq"), v) ||
		    !m.sizes().equals(params[i].sizes()) || !v.sizes().equals(params[i].sizes()) || step.numel() != 1)
			throw am::format_error("optimiser state " + k + " does not match its parameter");
		auto s = std::make_unique<torch::optim::AdamParamState>();
		s->step(step.item<int64_t>());
		s->exp_avg(m.to(params[i].device()));
		s->exp_avg_sq(v.to(params[i].device()));
		state[state_key(state, params[i])] = std::move(s);
	}
}

/* ---- the state a process group broadcasts (am_dist.cpp) ---- */

void am::trainer_set_dist(am_trainer *t, am::TrainerDist d) { t->dist = std::move(d); }
at::Generator &am::trainer_rng(am_trainer *t) { return t->rng; }
torch::Device am::trainer_device(am_trainer *t) { return t->device; }

torch::Tensor am::trainer_meta(am_trainer *t)
{
	std::vector<int64_t> m{(int64_t)t->step};
	for (auto *opt : {t->opt_gen.get(), t->opt_dis.get()}) {
		auto &state = opt->state();
		for (auto &p : opt->param_groups()[0].params()) {
			auto it = state.find(state_key(state, p));
			m.push_back(
				it == state.end()
					? -1
					: (int64_t) static_cast<torch::optim::AdamParamState &>(*it->second).step());
		}
	}
	return torch::tensor(m, torch::kLong);
}

void am::trainer_set_meta(am_trainer *t, const torch::Tensor &meta)
{
	auto m = meta.accessor<int64_t, 1>();
	t->step = (uint64_t)m[0];
	int64_t i = 1;
	for (auto *opt : {t->opt_gen.get(), t->opt_dis.get()}) {
		auto &state = opt->state();
		for (auto &p : opt->param_groups()[0].params()) {
			auto key = state_key(state, p);
			int64_t s = m[i++];
			if (s < 0) {
				state.erase(key);
				continue;
			}
			auto it = state.find(key);
			if (it == state.end()) {
				auto fresh = std::make_unique<torch::optim::AdamParamState>();
				fresh->exp_avg(torch::zeros_like(p));
				fresh->exp_avg_sq(torch::zeros_like(p));
				it = state.emplace(key, std::move(fresh)).first;
			}
			static_cast<torch::optim::AdamParamState &>(*it->second).step(s);
		}
	}
}

std::vector<torch::Tensor> am::trainer_tensors(am_trainer *t)
{
	std::vector<torch::Tensor> v;
	for (int i = 0; i < 4; i++)
		for (auto &p : net(t, i).parameters())
			v.push_back(p);
	for (auto *opt : {t->opt_gen.get(), t->opt_dis.get()}) {
		auto &state = opt->state();
		for (auto &p : opt->param_groups()[0].params()) {
			auto it = state.find(state_key(state, p));
			if (it == state.end())
				continue;
			auto &s = static_cast<torch::optim::AdamParamState &>(*it->second);
			v.push_back(s.exp_avg());
			v.push_back(s.exp_avg_sq());
		}
	}
	return v;
}

static std::string config_text(const am_config *c)
{
	char *s = am_config_to_json(c);
	if (!s)
		throw std::bad_alloc();
	std::string r(s);
	free(s);
	return r;
}

extern "C" int am_trainer_save(am_trainer *t, const char *path, am_status_t *st)
{
	if (!t)
		return am_fail(st, AT_EINVAL, "trainer is NULL");
	try {
		return am_file_write(
			path, AM_FILE_CHECKPOINT, config_text(&t->cfg),
			[t](const am_sink &sink) {
				torch::serialize::OutputArchive ar;
				for (int i = 0; i < 4; i++)
					am::save_module(ar, kNets[i], net(t, i));
				if (t->ema_a) {
					am::save_module(ar, "ema_a.", *t->ema_a);
					am::save_module(ar, "ema_b.", *t->ema_b);
				}
				save_adam(ar, "opt_gen.", *t->opt_gen);
				save_adam(ar, "opt_dis.", *t->opt_dis);
				ar.write("step", torch::tensor((int64_t)t->step));
				ar.write("rng_state", t->rng.get_state());
				ar.save_to(sink);
			},
			st);
	} catch (...) {
		return am_fail_current_exception(st, "saving a checkpoint");
	}
}

extern "C" int am_trainer_export(am_trainer *t, const char *path, am_status_t *st)
{
	if (!t)
		return am_fail(st, AT_EINVAL, "trainer is NULL");
	try {
		return am_file_write(
			path, AM_FILE_MODEL, config_text(&t->cfg),
			[t](const am_sink &sink) {
				torch::serialize::OutputArchive ar;
				/* Inference needs gen_a's content encoder and gen_b; gen_b's
					      * content encoder stays for am_model_recon_error. */
				Generator &ga = t->ema_a ? t->ema_a : t->gen_a;
				Generator &gb = t->ema_b ? t->ema_b : t->gen_b;
				am::save_module(ar, "gen_a.enc_content.", *ga->enc_content);
				am::save_module(ar, "gen_b.", *gb);
				ar.save_to(sink);
			},
			st);
	} catch (...) {
		return am_fail_current_exception(st, "writing an export");
	}
}

/*
 * The averages from a checkpoint; one written without them (ema_decay was 0,
 * or an older file) starts them from the live generators just loaded.
 */
static bool has_ema(torch::serialize::InputArchive &ar, am_trainer *t)
{
	torch::Tensor probe;
	return t->ema_b && ar.try_read(am::key_of("ema_b." + t->ema_b->named_parameters().begin()->key()), probe);
}

static void load_ema(torch::serialize::InputArchive &ar, am_trainer *t)
{
	if (!t->ema_a)
		return;
	if (!has_ema(ar, t)) {
		ema_reset(t);
		return;
	}
	am::load_module(ar, "ema_a.", *t->ema_a);
	am::load_module(ar, "ema_b.", *t->ema_b);
}

static am_trainer *trainer_load(const char *path, const char *device_pref, am_status_t *st)
{
	torch::Device dev(torch::kCPU);
	if (am::pick_device(device_pref, &dev, st) < 0)
		return nullptr;
	torch::serialize::InputArchive ar;
	am_config cfg;
	if (am::open_archive(path, AM_FILE_CHECKPOINT, dev, ar, &cfg, st) < 0)
		return nullptr;
	snprintf(cfg.device, sizeof cfg.device, "%s", dev.is_cuda() ? "cuda" : "cpu");
	am_trainer *raw = trainer_new(&cfg, dev.is_cuda() ? "cuda" : "cpu", st);
	if (!raw)
		return nullptr;
	std::unique_ptr<am_trainer> t(raw);
	try {
		for (int i = 0; i < 4; i++)
			am::load_module(ar, kNets[i], net(t.get(), i));
		load_ema(ar, t.get());
		load_adam(ar, "opt_gen.", *t->opt_gen);
		load_adam(ar, "opt_dis.", *t->opt_dis);
		torch::Tensor step, rng;
		if (!ar.try_read("step", step) || !ar.try_read("rng_state", rng))
			throw am::format_error("step or RNG state missing");
		t->step = (uint64_t)step.item<int64_t>();
		t->rng.set_state(rng.to(torch::kCPU));
	} catch (const am::format_error &e) {
		am_fail(st, AT_ECORRUPT, std::string(path) + ": " + e.what());
		return nullptr;
	} catch (const c10::Error &e) {
		am_fail(st, AT_ECORRUPT, std::string(path) + ": " + e.what_without_backtrace());
		return nullptr;
	}
	am_ok(st);
	return t.release();
}

extern "C" am_trainer *am_trainer_load(const char *path, const char *device_pref, am_status_t *st)
{
	try {
		return trainer_load(path, device_pref, st);
	} catch (...) {
		am_fail_current_exception(st, "loading a checkpoint");
		return nullptr;
	}
}

static int warm_start(am_trainer *t, const char *path, am_status_t *st)
{
	am_file_kind kind;
	int rc = am_file_peek_kind(path, &kind, st);
	if (rc < 0)
		return rc;
	torch::serialize::InputArchive ar;
	am_config cfg;
	rc = am::open_archive(path, kind, t->device, ar, &cfg, st);
	if (rc < 0)
		return rc;
	std::string diff = am_config_arch_diff(&cfg, &t->cfg, kind == AM_FILE_CHECKPOINT);
	if (!diff.empty())
		return am_fail(st, AT_ECONFLICT, std::string(path) + ": config mismatch: " + diff);
	/* Load into copies first, so that a bad file leaves the trainer as it was. */
	try {
		if (kind == AM_FILE_CHECKPOINT) {
			std::vector<std::shared_ptr<torch::nn::Module>> fresh = {Generator(t->cfg, 1).ptr(),
										 Generator(t->cfg, 3).ptr(),
										 Discriminator(t->cfg, 1).ptr(),
										 Discriminator(t->cfg, 3).ptr()};
			for (int i = 0; i < 4; i++) {
				fresh[i]->to(t->device);
				am::load_module(ar, kNets[i], *fresh[i]);
			}
			Generator ea{nullptr}, eb{nullptr};
			if (has_ema(ar, t)) {
				ea = Generator(t->cfg, 1);
				eb = Generator(t->cfg, 3);
				ea->to(t->device);
				eb->to(t->device);
				am::load_module(ar, "ema_a.", *ea);
				am::load_module(ar, "ema_b.", *eb);
			}
			torch::NoGradGuard ng;
			for (int i = 0; i < 4; i++) {
				auto dst = net(t, i).parameters(), src = fresh[i]->parameters();
				for (size_t j = 0; j < dst.size(); j++)
					dst[j].copy_(src[j]);
			}
			ema_reset(t);
			if (ea) {
				copy_weights(*t->ema_a, *ea);
				copy_weights(*t->ema_b, *eb);
			}
		} else {
			Generator ga(t->cfg, 1), gb(t->cfg, 3);
			ga->to(t->device);
			gb->to(t->device);
			am::load_module(ar, "gen_a.enc_content.", *ga->enc_content);
			am::load_module(ar, "gen_b.", *gb);
			torch::NoGradGuard ng;
			auto copy = [](torch::nn::Module &dst, torch::nn::Module &src) {
				auto d = dst.parameters(), s = src.parameters();
				for (size_t j = 0; j < d.size(); j++)
					d[j].copy_(s[j]);
			};
			copy(*t->gen_a->enc_content, *ga->enc_content);
			copy(*t->gen_b, *gb);
			/* An export holds the weights that served (an average, if
			 * its trainer kept one): the averages start from them. */
			ema_reset(t);
		}
	} catch (const am::format_error &e) {
		return am_fail(st, AT_ECORRUPT, std::string(path) + ": " + e.what());
	} catch (const c10::Error &e) {
		return am_fail(st, AT_ECORRUPT, std::string(path) + ": " + e.what_without_backtrace());
	}
	return am_ok(st);
}

extern "C" int am_trainer_warm_start(am_trainer *t, const char *path, am_status_t *st)
{
	if (!t)
		return am_fail(st, AT_EINVAL, "trainer is NULL");
	try {
		return warm_start(t, path, st);
	} catch (...) {
		return am_fail_current_exception(st, "warm start");
	}
}

/* ---- stylize with the trainer's generators ---- */

extern "C" int am_trainer_stylize(am_trainer *t, const uint8_t *gray, int w, int h, const am_style *style,
				  uint8_t *rgb_out, int out_w, int out_h, am_status_t *st)
{
	if (!t)
		return am_fail(st, AT_EINVAL, "trainer is NULL");
	try {
		Generator &ga = t->ema_a ? t->ema_a : t->gen_a;
		Generator &gb = t->ema_b ? t->ema_b : t->gen_b;
		am::Translator tr{&t->cfg, t->device, ga->enc_content, gb};
		return am::stylize(tr, gray, w, h, style, rgb_out, out_w, out_h, st);
	} catch (...) {
		return am_fail_current_exception(st, "stylize");
	}
}
