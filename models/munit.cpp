/*
 * munit.cpp — the networks (see munit.hpp for what follows MUNIT and what
 * differs), weight initialisation, devices, weight archives and image
 * conversion. bench/train/munit_ref.py is the same model in PyTorch eager
 * mode; keep the two in step.
 */
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>

#include <torch/cuda.h>

#include "munit.hpp"
#include "err.h"

namespace F = torch::nn::functional;

namespace am
{

static const double kEps = 1e-5;

/* ---- blocks ---- */

ConvBlockImpl::ConvBlockImpl(int in, int out, int k, int stride, int pad, Norm norm_, Act act_, bool pono_, bool ms_)
    : norm(norm_), act(act_), pono(pono_), ms(ms_), out_ch(out)
{
	auto o = torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(true);
	if (pad > 0)
		o.padding_mode(torch::kReflect);
	conv = register_module("conv", torch::nn::Conv2d(o));
	if (norm == Norm::Ln) {
		gamma = register_parameter("gamma", torch::ones({out}));
		beta = register_parameter("beta", torch::zeros({out}));
	}
}

static torch::Tensor instance_norm(const torch::Tensor &x)
{
	return torch::instance_norm(x, {}, {}, {}, {}, true, 0.1, kEps, x.is_cuda());
}

/*
 * Inference (no autograd): the same functions computed with fewer passes over
 * memory — folded norm affines, in-place activations and the
 * sub-pixel upsampling convolution below. Outputs differ from the training
 * graph by float rounding only (tests/unit/test_model.c, model_fast_paths);
 * training keeps the plain graph, whose backward the trainer relies on.
 */
static std::atomic<bool> fast_paths{true};

void set_fast_paths(bool on) { fast_paths.store(on, std::memory_order_relaxed); }

static bool fast() { return fast_paths.load(std::memory_order_relaxed) && !torch::GradMode::is_enabled(); }

torch::Tensor ConvBlockImpl::forward(torch::Tensor x, const torch::Tensor &adain, const Moments *msm, Moments *pono_out)
{
	return post(conv->forward(x), adain, msm, pono_out);
}

torch::Tensor ConvBlockImpl::post(torch::Tensor x, const torch::Tensor &adain, const Moments *msm, Moments *pono_out)
{
	bool f = fast();
	if (pono) {
		/* Each position normalised across channels; its moments travel to the decoder. */
		torch::Tensor mean, std;
		if (f) {
			/* (var_mean is slower than the two reductions in libtorch 1.13.) */
			mean = x.mean(1, true);
			std = (x.var(1, false, true) + kEps).sqrt_();
			auto r = std.reciprocal();
			x = torch::addcmul(-mean * r, x, r);
		} else {
			mean = x.mean(1, true);
			std = (x.var(1, false, true) + kEps).sqrt();
			x = (x - mean) / std;
		}
		if (pono_out)
			*pono_out = Moments{mean, std};
	}
	switch (norm) {
	case Norm::None: break;
	case Norm::In: x = instance_norm(x); break;
	case Norm::AdaIn: {
		int64_t b = x.size(0), c = x.size(1);
		if (f) {
			/* NVlabs' AdaIN: one batch norm over a (1, B*C, H, W) view, affine fused. */
			auto bias = adain.narrow(1, 0, c).reshape({b * c});
			auto weight = adain.narrow(1, c, c).reshape({b * c});
			auto v = x.contiguous().view({1, b * c, x.size(2), x.size(3)});
			x = torch::batch_norm(v, weight, bias, {}, {}, true, 0.1, kEps, x.is_cuda()).view(x.sizes());
			break;
		}
		auto bias = adain.narrow(1, 0, c).reshape({b, c, 1, 1});
		auto weight = adain.narrow(1, c, c).reshape({b, c, 1, 1});
		x = torch::addcmul(bias, instance_norm(x), weight);
		break;
	}
	case Norm::Ln: {
		/* MUNIT's LayerNorm: per sample over (C, H, W), unbiased std, eps added to std. */
		if (f) {
			/* One pass for (x - mean) / (std + eps) * gamma + beta. */
			auto flat = x.flatten(1);
			auto mean = flat.mean(1).reshape({-1, 1, 1, 1});
			auto inv = (flat.std(1, true) + kEps).reciprocal_().reshape({-1, 1, 1, 1});
			auto scale = gamma.reshape({1, -1, 1, 1}) * inv;
			auto shift = beta.reshape({1, -1, 1, 1}) - mean * scale;
			x = torch::addcmul(shift, x, scale);
			break;
		}
		auto flat = x.flatten(1);
		auto mean = flat.mean(1).reshape({-1, 1, 1, 1});
		auto std = flat.std(1, true).reshape({-1, 1, 1, 1});
		x = (x - mean) / (std + kEps);
		x = torch::addcmul(beta.reshape({1, -1, 1, 1}), x, gamma.reshape({1, -1, 1, 1}));
		break;
	}
	}
	if (ms && msm) {
		if (f)
			x.mul_(msm->std).add_(msm->mean);
		else
			x = torch::addcmul(msm->mean, x, msm->std);
	}
	switch (act) {
	case Act::None: break;
	case Act::Relu: x = f ? x.relu_() : torch::relu(x); break;
	case Act::LRelu: x = f ? torch::leaky_relu_(x, 0.2) : torch::leaky_relu(x, 0.2); break;
	case Act::Tanh: x = f ? x.tanh_() : torch::tanh(x); break;
	}
	return x;
}

/*
 * conv(reflect_pad(upsample_nearest_2x(x))) for an odd k x k kernel, without
 * the upsampled tensor: each of the four output phases (row parity a, column
 * parity b) sees the low-resolution input through a (k/2 + 1)^2 kernel whose
 * taps are sums of the original ones (k = 5: 9 multiply-adds per output
 * instead of 25). The four phases run as one convolution with 4x the output
 * channels, interleaved by pixel_shuffle. Borders differ (reflection of the
 * upsampled image is not an upsampled reflection), so the outer p rows and
 * columns are recomputed the plain way on thin strips.
 */
torch::Tensor ConvBlockImpl::up2_conv(const torch::Tensor &x)
{
	const auto &o = conv->options;
	auto up = [](const torch::Tensor &t) {
		return F::interpolate(t, F::InterpolateFuncOptions()
						 .scale_factor(std::vector<double>{2.0, 2.0})
						 .mode(torch::kNearest));
	};
	int64_t k = (*o.kernel_size())[0], p = k / 2, h = x.size(2), w = x.size(3);
	const auto *pad = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
	bool ok = fast() && k % 2 == 1 && (*o.kernel_size())[1] == k && (*o.stride())[0] == 1 &&
		  (*o.stride())[1] == 1 && (*o.dilation())[0] == 1 && (*o.dilation())[1] == 1 && o.groups() == 1 &&
		  pad && (**pad)[0] == p && (**pad)[1] == p &&
		  c10::holds_alternative<torch::enumtype::kReflect>(o.padding_mode()) && p >= 1 && h > p && w > p &&
		  x.dim() == 4;
	if (!ok)
		return conv->forward(up(x));
	/* Output row 2i + a, tap t reads low-res row i + floor((a + t - p) / 2): offsets -l..l, l = ceil(p / 2). */
	int64_t l = (p + 1) / 2, q = 2 * l + 1;
	auto m = torch::zeros({2, q, k}, torch::kFloat);
	for (int64_t a = 0; a < 2; a++)
		for (int64_t t = 0; t < k; t++) {
			int64_t d = a + t - p;
			int64_t off = d >= 0 ? d / 2 : -((1 - d) / 2);
			m[a][off + l][t] = 1.0;
		}
	m = m.to(conv->weight.options());
	/* (O, a, b, I, q, q) -> channel o * 4 + a * 2 + b, pixel_shuffle's order. */
	auto w4 = torch::einsum("art,oitu,bsu->oabirs", {m, conv->weight, m})
			  .reshape({4 * conv->weight.size(0), conv->weight.size(1), q, q});
	auto b4 = conv->bias.defined() ? conv->bias.repeat_interleave(4) : torch::Tensor();
	auto y = torch::pixel_shuffle(F::conv2d(x, w4, F::Conv2dFuncOptions().bias(b4).padding(l)), 2);
	/* The outer p rows and columns read the reflected border: recompute them
	 * from thin strips (p + 1 low-res rows upsampled, reflect-padded, then a
	 * valid convolution over just the 3p rows they need). Columns go through
	 * the transposed image and kernel: a conv p pixels wide runs far slower
	 * than one p rows tall. */
	auto strip = [&](const torch::Tensor &s, const torch::Tensor &wt, int64_t from) {
		auto u = F::pad(up(s), F::PadFuncOptions({p, p, p, p}).mode(torch::kReflect));
		return F::conv2d(u.narrow(2, from, 3 * p), wt, F::Conv2dFuncOptions().bias(conv->bias));
	};
	auto wt = conv->weight.transpose(2, 3).contiguous();
	auto xt = [&](int64_t from) { return x.narrow(3, from, p + 1).transpose(2, 3).contiguous(); };
	int64_t H = 2 * h, W = 2 * w;
	y.narrow(2, 0, p).copy_(strip(x.narrow(2, 0, p + 1), conv->weight, 0));
	y.narrow(2, H - p, p).copy_(strip(x.narrow(2, h - p - 1, p + 1), conv->weight, p + 2));
	y.narrow(3, 0, p).copy_(strip(xt(0), wt, 0).transpose(2, 3));
	y.narrow(3, W - p, p).copy_(strip(xt(w - p - 1), wt, p + 2).transpose(2, 3));
	return y;
}

ResBlockImpl::ResBlockImpl(int d, Norm norm) : dim(d)
{
	c1 = register_module("c1", ConvBlock(d, d, 3, 1, 1, norm, Act::Relu));
	c2 = register_module("c2", ConvBlock(d, d, 3, 1, 1, norm, Act::None));
}

torch::Tensor ResBlockImpl::forward(torch::Tensor x, const torch::Tensor &adain)
{
	torch::Tensor a1, a2;
	if (adain.defined()) {
		a1 = adain.narrow(1, 0, 2 * dim);
		a2 = adain.narrow(1, 2 * dim, 2 * dim);
	}
	auto y = c1->forward(x, a1);
	y = c2->forward(y, a2);
	return x + y;
}

/* ---- encoders, decoder, MLP ---- */

ContentEncoderImpl::ContentEncoderImpl(int n_down, int n_res, int in, int dim, bool pono, int from)
{
	blocks = register_module("blocks", torch::nn::ModuleList());
	res = register_module("res", torch::nn::ModuleList());
	/* Blocks 0 .. n_down-1 run at S, S/2, ..., S/2^(n_down-1): one per decoder
	 * upsampling block. Levels finer than pono_from keep their moments. */
	blocks->push_back(ConvBlock(in, dim, 7, 1, 3, Norm::In, Act::Relu, pono && n_down > 0 && from == 0));
	for (int i = 0; i < n_down; i++) {
		blocks->push_back(
			ConvBlock(dim, 2 * dim, 4, 2, 1, Norm::In, Act::Relu, pono && i < n_down - 1 && i + 1 >= from));
		dim *= 2;
	}
	for (int i = 0; i < n_res; i++)
		res->push_back(ResBlock(dim, Norm::In));
	out_dim = dim;
}

torch::Tensor ContentEncoderImpl::forward(torch::Tensor x, std::vector<Moments> *stats)
{
	for (auto &m : *blocks) {
		auto b = m->as<ConvBlockImpl>();
		Moments mo;
		x = b->forward(x, {}, nullptr, &mo);
		if (b->pono && stats)
			stats->push_back(mo);
	}
	for (auto &m : *res)
		x = m->as<ResBlockImpl>()->forward(x);
	return x;
}

StyleEncoderImpl::StyleEncoderImpl(int n_down, int in, int dim, int style_dim)
{
	blocks = register_module("blocks", torch::nn::ModuleList());
	blocks->push_back(ConvBlock(in, dim, 7, 1, 3, Norm::None, Act::Relu));
	for (int i = 0; i < 2; i++) {
		blocks->push_back(ConvBlock(dim, 2 * dim, 4, 2, 1, Norm::None, Act::Relu));
		dim *= 2;
	}
	for (int i = 0; i < n_down - 2; i++)
		blocks->push_back(ConvBlock(dim, dim, 4, 2, 1, Norm::None, Act::Relu));
	out = register_module("out", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, style_dim, 1)));
}

torch::Tensor StyleEncoderImpl::forward(torch::Tensor x)
{
	for (auto &m : *blocks)
		x = m->as<ConvBlockImpl>()->forward(x);
	x = x.mean({2, 3}, true); /* global average pool */
	return out->forward(x).flatten(1);
}

DecoderImpl::DecoderImpl(int n_up, int n_res, int dim, int out_ch, bool pono_, int from) : pono(pono_), pono_from(from)
{
	res = register_module("res", torch::nn::ModuleList());
	ups = register_module("ups", torch::nn::ModuleList());
	for (int i = 0; i < n_res; i++)
		res->push_back(ResBlock(dim, Norm::AdaIn));
	for (int i = 0; i < n_up; i++) {
		ups->push_back(ConvBlock(dim, dim / 2, 5, 1, 2, Norm::Ln, Act::Relu, false, pono));
		dim /= 2;
	}
	last = register_module("last", ConvBlock(dim, out_ch, 7, 1, 3, Norm::None, Act::Tanh));
}

int64_t DecoderImpl::num_adain_params() const
{
	int64_t n = 0;
	for (auto &m : *res)
		n += 4 * m->as<ResBlockImpl>()->dim;
	return n;
}

torch::Tensor DecoderImpl::forward(torch::Tensor x, const std::vector<Moments> &stats, const torch::Tensor &adain)
{
	int64_t off = 0;
	for (auto &m : *res) {
		auto r = m->as<ResBlockImpl>();
		x = r->forward(x, adain.narrow(1, off, 4 * r->dim));
		off += 4 * r->dim;
	}
	size_t n = ups->size();
	for (size_t i = 0; i < n; i++) {
		/* Upsampling block i works at S / 2^(n-1-i): level n-1-i, stats[level - pono_from]. */
		int level = (int)(n - 1 - i);
		bool have = pono && level >= pono_from && stats.size() == n - (size_t)std::min<int>(pono_from, (int)n);
		const Moments *mo = have ? &stats[level - pono_from] : nullptr;
		auto u = ups[i]->as<ConvBlockImpl>();
		x = u->post(u->up2_conv(x), {}, mo);
	}
	return last->forward(x);
}

MLPImpl::MLPImpl(int in, int out, int dim, int n_blk)
{
	layers = register_module("layers", torch::nn::ModuleList());
	layers->push_back(torch::nn::Linear(in, dim));
	for (int i = 0; i < n_blk - 2; i++)
		layers->push_back(torch::nn::Linear(dim, dim));
	layers->push_back(torch::nn::Linear(dim, out));
}

torch::Tensor MLPImpl::forward(torch::Tensor x)
{
	size_t n = layers->size();
	for (size_t i = 0; i < n; i++) {
		x = layers[i]->as<torch::nn::LinearImpl>()->forward(x);
		if (i + 1 < n)
			x = torch::relu(x);
	}
	return x;
}

/* ---- generator and discriminator ---- */

GeneratorImpl::GeneratorImpl(const am_config &c, int ch)
{
	/* MUNIT's style encoder always downsamples 4 times. */
	enc_style = register_module("enc_style", StyleEncoder(4, ch, c.gen_dim, c.style_dim));
	enc_content = register_module("enc_content",
				      ContentEncoder(c.n_downsample, c.n_res, ch, c.gen_dim, c.pono != 0, c.pono_from));
	dec = register_module("dec",
			      Decoder(c.n_downsample, c.n_res, enc_content->out_dim, ch, c.pono != 0, c.pono_from));
	mlp = register_module("mlp", MLP(c.style_dim, (int)dec->num_adain_params(), c.mlp_dim, 3));
}

Encoded GeneratorImpl::encode(const torch::Tensor &x)
{
	Encoded e;
	e.c = enc_content->forward(x, &e.stats);
	e.s = enc_style->forward(x);
	return e;
}

torch::Tensor GeneratorImpl::decode(const torch::Tensor &c, const std::vector<Moments> &stats, const torch::Tensor &s)
{
	return dec->forward(c, stats, mlp->forward(s));
}

DiscriminatorImpl::DiscriminatorImpl(const am_config &c, int ch)
{
	nets = register_module("nets", torch::nn::ModuleList());
	for (int j = 0; j < c.num_scales; j++) {
		auto net = torch::nn::ModuleList();
		int dim = c.dis_dim;
		net->push_back(ConvBlock(ch, dim, 4, 2, 1, Norm::None, Act::LRelu));
		for (int l = 1; l < c.n_layer; l++) {
			net->push_back(ConvBlock(dim, 2 * dim, 4, 2, 1, Norm::None, Act::LRelu));
			dim *= 2;
		}
		net->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, 1, 1)));
		nets->push_back(net);
	}
}

std::vector<torch::Tensor> DiscriminatorImpl::forward(torch::Tensor x)
{
	std::vector<torch::Tensor> outs;
	size_t n = nets->size();
	for (size_t j = 0; j < n; j++) {
		auto net = nets[j]->as<torch::nn::ModuleListImpl>();
		auto y = x;
		size_t k = net->size();
		for (size_t l = 0; l + 1 < k; l++)
			y = (*net)[l]->as<ConvBlockImpl>()->forward(y);
		outs.push_back((*net)[k - 1]->as<torch::nn::Conv2dImpl>()->forward(y));
		if (j + 1 < n)
			x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(3).stride(2).padding(1).count_include_pad(false));
	}
	return outs;
}

torch::Tensor DiscriminatorImpl::dis_loss(const torch::Tensor &fake, const torch::Tensor &real)
{
	auto o0 = forward(fake), o1 = forward(real);
	torch::Tensor loss;
	for (size_t i = 0; i < o0.size(); i++) {
		auto l = o0[i].square().mean() + (o1[i] - 1).square().mean();
		loss = loss.defined() ? loss + l : l;
	}
	return loss;
}

torch::Tensor DiscriminatorImpl::gen_loss(const torch::Tensor &fake)
{
	auto o = forward(fake);
	torch::Tensor loss;
	for (auto &t : o) {
		auto l = (t - 1).square().mean();
		loss = loss.defined() ? loss + l : l;
	}
	return loss;
}

/* ---- init ---- */

static void init_weights(torch::nn::Module &m, at::Generator &gen, bool kaiming)
{
	/* No lock on gen: each sampling op takes the generator's own mutex. */
	torch::NoGradGuard ng;
	for (auto &sub : m.modules(true)) {
		torch::Tensor w, b;
		if (auto c = sub->as<torch::nn::Conv2dImpl>()) {
			w = c->weight;
			b = c->bias;
		} else if (auto l = sub->as<torch::nn::LinearImpl>()) {
			w = l->weight;
			b = l->bias;
		} else if (auto cb = sub->as<ConvBlockImpl>()) {
			if (cb->gamma.defined())
				cb->gamma.uniform_(0, 1, gen);
			continue;
		} else {
			continue;
		}
		int64_t fan_in = w.numel() / w.size(0);
		w.normal_(0, kaiming ? std::sqrt(2.0 / (double)fan_in) : 0.02, gen);
		if (b.defined())
			b.zero_();
	}
}

void init_kaiming(torch::nn::Module &m, at::Generator &gen) { init_weights(m, gen, true); }
void init_gaussian(torch::nn::Module &m, at::Generator &gen) { init_weights(m, gen, false); }

/* ---- devices ---- */

int pick_device(const char *pref, torch::Device *out, am_status_t *st)
{
	bool cuda = torch::cuda::is_available();
	if (!pref || !*pref || !strcmp(pref, "auto")) {
		*out = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
		return 0;
	}
	if (!strcmp(pref, "cpu")) {
		*out = torch::Device(torch::kCPU);
		return 0;
	}
	if (!strcmp(pref, "cuda")) {
		if (!cuda)
			return am_fail(st, AT_EUNAVAILABLE, "device \"cuda\" asked for but libtorch sees no GPU");
		*out = torch::Device(torch::kCUDA, 0);
		return 0;
	}
	return am_fail(st, AT_EINVAL, std::string("unknown device \"") + pref + "\" (auto, cpu or cuda)");
}

const char *device_label(const torch::Device &d) { return d.is_cuda() ? "cuda:0" : "cpu"; }

/* ---- archives ---- */

std::string key_of(const std::string &name)
{
	std::string k;
	k.reserve(name.size() + 8);
	for (char ch : name) {
		if (ch == '.')
			k += "__";
		else
			k += ch;
	}
	return k;
}

static std::string shape_str(const torch::Tensor &t)
{
	std::string s = "[";
	for (int64_t i = 0; i < t.dim(); i++)
		s += (i ? "," : "") + std::to_string(t.size(i));
	return s + "]";
}

void save_module(torch::serialize::OutputArchive &ar, const std::string &prefix, torch::nn::Module &m)
{
	for (auto &p : m.named_parameters(true))
		ar.write(key_of(prefix + p.key()), p.value().detach());
	for (auto &b : m.named_buffers(true))
		ar.write(key_of(prefix + b.key()), b.value(), true);
}

static void load_one(torch::serialize::InputArchive &ar, const std::string &name, torch::Tensor &dst, bool buffer)
{
	torch::Tensor t;
	if (!ar.try_read(key_of(name), t, buffer))
		throw format_error("tensor " + name + " is missing from the payload");
	if (!t.sizes().equals(dst.sizes()) || t.scalar_type() != dst.scalar_type())
		throw format_error("tensor " + name + " is " + shape_str(t) + " in the payload, the config implies " +
				   shape_str(dst));
	dst.copy_(t);
}

void load_module(torch::serialize::InputArchive &ar, const std::string &prefix, torch::nn::Module &m)
{
	torch::NoGradGuard ng;
	for (auto &p : m.named_parameters(true))
		load_one(ar, prefix + p.key(), p.value(), false);
	for (auto &b : m.named_buffers(true))
		load_one(ar, prefix + b.key(), b.value(), true);
}

int open_archive(const char *path, am_file_kind kind, const torch::Device &dev, torch::serialize::InputArchive &ar,
		 am_config *cfg, am_status_t *st)
{
	std::string json, data;
	size_t off = 0, len = 0;
	int rc = am_file_read(path, kind, &json, &data, &off, &len, st);
	if (rc < 0)
		return rc;
	am_status_t tmp;
	if (am_config_parse_strict(json.c_str(), cfg, &tmp) < 0)
		return am_fail(st, AT_ECORRUPT, std::string(path) + ": bad config in header: " + tmp.msg);
	try {
		ar.load_from(data.data() + off, len, dev);
	} catch (const c10::Error &e) {
		return am_fail(st, AT_ECORRUPT,
			       std::string(path) + ": unreadable payload: " + e.what_without_backtrace());
	}
	return 0;
}

/* ---- images ---- */

torch::Tensor image_to_tensor(const uint8_t *px, int w, int h, int channels, const torch::Device &dev)
{
	auto t = torch::from_blob(const_cast<uint8_t *>(px), {1, h, w, channels}, torch::kUInt8);
	/* Move bytes, not floats, to the GPU. */
	t = t.to(dev).permute({0, 3, 1, 2}).to(torch::kFloat);
	return t.div_(127.5).sub_(1.0);
}

torch::Tensor resize(const torch::Tensor &x, int h, int w)
{
	if (x.size(2) == h && x.size(3) == w)
		return x;
	bool shrink = h < x.size(2) || w < x.size(3);
	return F::interpolate(x, F::InterpolateFuncOptions()
					 .size(std::vector<int64_t>{h, w})
					 .mode(torch::kBilinear)
					 .align_corners(false)
					 .antialias(shrink));
}

void tensor_to_rgb(const torch::Tensor &y, uint8_t *out, int out_w, int out_h)
{
	auto r = resize(y, out_h, out_w);
	r = r.add(1.0)
		    .mul_(127.5)
		    .round_()
		    .clamp_(0, 255)
		    .to(torch::kUInt8)
		    .permute({0, 2, 3, 1})
		    .contiguous()
		    .to(torch::kCPU);
	memcpy(out, r.data_ptr<uint8_t>(), (size_t)out_w * out_h * 3);
}

/* ---- stylize ---- */

int check_image_args(const void *px, int w, int h, am_status_t *st)
{
	if (!px)
		return am_fail(st, AT_EINVAL, "image is NULL");
	if (w < 1 || h < 1 || w > 8192 || h > 8192)
		return am_fail(st, AT_ERANGE,
			       "image size " + std::to_string(w) + "x" + std::to_string(h) + " is outside 1..8192");
	return 0;
}

torch::Tensor style_code(Translator &tr, const am_style *style, int depth)
{
	int sd = tr.cfg->style_dim;
	if (!style)
		throw arg_error("style is NULL");
	if (depth > 4)
		throw arg_error("style mix nested deeper than 4");
	switch (style->kind) {
	case AM_STYLE_SEED: {
		/* A private generator per call: same seed, same code, on any thread or device. */
		auto gen = at::make_generator<at::CPUGeneratorImpl>(style->seed);
		return torch::randn({1, sd}, gen, torch::kFloat).to(tr.device);
	}
	case AM_STYLE_REFERENCE: {
		am_status_t tmp;
		if (check_image_args(style->rgb, style->w, style->h, &tmp) < 0)
			throw arg_error("reference style: " + tmp.msg);
		auto x = resize(image_to_tensor(style->rgb, style->w, style->h, 3, tr.device), tr.cfg->image_size,
				tr.cfg->image_size);
		return tr.gen_b->enc_style->forward(x);
	}
	case AM_STYLE_MIX: {
		if (!(style->alpha >= 0.0f && style->alpha <= 1.0f))
			throw arg_error("style mix alpha must be in [0, 1]");
		auto a = style_code(tr, style->a, depth + 1);
		auto b = style_code(tr, style->b, depth + 1);
		return torch::lerp(a, b, (double)style->alpha);
	}
	case AM_STYLE_CODE: {
		if (!style->code || style->code_len != sd)
			throw arg_error("style code must have style_dim = " + std::to_string(sd) + " floats");
		for (int i = 0; i < sd; i++)
			if (!std::isfinite(style->code[i]))
				throw arg_error("style code has a non-finite value");
		return torch::from_blob(const_cast<float *>(style->code), {1, sd}, torch::kFloat).clone().to(tr.device);
	}
	}
	throw arg_error("unknown style kind " + std::to_string((int)style->kind));
}

int stylize(Translator &tr, const uint8_t *gray, int w, int h, const am_style *style, uint8_t *rgb_out, int out_w,
	    int out_h, am_status_t *st)
{
	int rc = check_image_args(gray, w, h, st);
	if (rc == 0)
		rc = check_image_args(rgb_out, out_w, out_h, st);
	if (rc < 0)
		return rc;
	try {
		torch::NoGradGuard ng;
		int s = tr.cfg->image_size;
		auto x = resize(image_to_tensor(gray, w, h, 1, tr.device), s, s);
		auto code = style_code(tr, style, 0);
		std::vector<Moments> stats;
		auto c = tr.enc_a->forward(x, &stats);
		auto y = tr.gen_b->decode(c, stats, code);
		tensor_to_rgb(y, rgb_out, out_w, out_h);
		return am_ok(st);
	} catch (const arg_error &e) {
		return am_fail(st, AT_EINVAL, e.what());
	} catch (...) {
		return am_fail_current_exception(st, "stylize");
	}
}

} // namespace am
