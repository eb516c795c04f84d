/*
 * am_eval.cpp — the scores the evaluate job compares candidate and champion
 * with. All deterministic and download-free:
 *
 *   edge F1     content preservation: Sobel edges of the sketch against the
 *               output's strongest edges, matched within a tolerance;
 *   chamfer     content preservation that does not saturate: mean distance
 *               (px) between those two edge sets, both directions;
 *   KID         realism: unbiased MMD^2 with the polynomial kernel on
 *               features of a fixed random conv net (seeded; random features
 *               separate image distributions well enough to rank two models
 *               on the same holdout set, without pretrained weights to
 *               download), with a fixed-seed bootstrap interval;
 *   MMD^2       the same with a Gaussian kernel (kept for the C API);
 *   diversity   LPIPS-like: channel-normalised feature maps of that net,
 *               mean squared difference, mean over layers and pairs;
 *   recon error lives in am_model.cpp (it needs the model).
 */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional.h>

#include "munit.hpp"
#include "err.h"
#include "splitmix.h"

/* ---- edge F1 ---- */

/* Sobel magnitude, 1.0 for a full black-to-white step; borders replicated. */
static std::vector<float> sobel(const std::vector<float> &img, int w, int h)
{
	std::vector<float> mag((size_t)w * h);
	auto at = [&](int x, int y) {
		x = std::min(std::max(x, 0), w - 1);
		y = std::min(std::max(y, 0), h - 1);
		return img[(size_t)y * w + x];
	};
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			float gx = (at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1)) -
				   (at(x - 1, y - 1) + 2 * at(x - 1, y) + at(x - 1, y + 1));
			float gy = (at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1)) -
				   (at(x - 1, y - 1) + 2 * at(x, y - 1) + at(x + 1, y - 1));
			mag[(size_t)y * w + x] = std::sqrt(gx * gx + gy * gy) / (4.0f * 255.0f);
		}
	return mag;
}

/* Square (Chebyshev) dilation by r, separable. */
static std::vector<uint8_t> dilate(const std::vector<uint8_t> &m, int w, int h, int r)
{
	std::vector<uint8_t> tmp(m.size()), out(m.size());
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t v = 0;
			for (int d = -r; d <= r && !v; d++) {
				int xx = x + d;
				if (xx >= 0 && xx < w)
					v = m[(size_t)y * w + xx];
			}
			tmp[(size_t)y * w + x] = v;
		}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t v = 0;
			for (int d = -r; d <= r && !v; d++) {
				int yy = y + d;
				if (yy >= 0 && yy < h)
					v = tmp[(size_t)yy * w + x];
			}
			out[(size_t)y * w + x] = v;
		}
	return out;
}

#define SKETCH_EDGE 0.25f /* a quarter of a full step: strokes, not paper grain */
#define OUTPUT_FLOOR 0.02f

/*
 * The two edge sets every content score compares: the sketch's Sobel edges
 * (>= SKETCH_EDGE) and the same number of the output's strongest luminance
 * edges (never weaker than OUTPUT_FLOOR, so a flat output has none).
 * Returns the sketch's edge count.
 */
static size_t edge_sets(const uint8_t *gray, const uint8_t *rgb, int w, int h, std::vector<uint8_t> &es,
			std::vector<uint8_t> &eo, size_t *ko_out, size_t *strong_out)
{
	size_t n = (size_t)w * h;
	std::vector<float> g(n), l(n);
	for (size_t i = 0; i < n; i++) {
		g[i] = gray[i];
		l[i] = 0.299f * rgb[3 * i] + 0.587f * rgb[3 * i + 1] + 0.114f * rgb[3 * i + 2];
	}
	auto ms = sobel(g, w, h), mo = sobel(l, w, h);
	es.assign(n, 0);
	eo.assign(n, 0);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += es[i] = ms[i] >= SKETCH_EDGE;
	/* Paintings have softer, lower-contrast edges than ink: compare the sketch's
	 * edges with the same number of the output's strongest ones. */
	size_t ko = 0;
	if (k > 0) {
		std::vector<float> sorted(mo);
		std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
		float thr = std::max(sorted[k - 1], OUTPUT_FLOOR);
		for (size_t i = 0; i < n; i++)
			ko += eo[i] = mo[i] >= thr;
	}
	size_t strong = 0;
	for (size_t i = 0; i < n; i++)
		strong += mo[i] >= SKETCH_EDGE;
	*ko_out = ko;
	*strong_out = strong;
	return k;
}

static double edge_f1(const uint8_t *gray, const uint8_t *rgb, int w, int h, int tol)
{
	size_t n = (size_t)w * h, ko, strong;
	std::vector<uint8_t> es, eo;
	size_t k = edge_sets(gray, rgb, w, h, es, eo, &ko, &strong);
	if (k == 0 || ko == 0)
		return k == 0 && strong == 0 ? 1.0 : 0.0;
	auto ds = dilate(es, w, h, tol), dout = dilate(eo, w, h, tol);
	size_t tp_o = 0, tp_s = 0;
	for (size_t i = 0; i < n; i++) {
		tp_o += eo[i] && ds[i];
		tp_s += es[i] && dout[i];
	}
	double precision = (double)tp_o / (double)ko, recall = (double)tp_s / (double)k;
	return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

extern "C" double am_edge_f1(const uint8_t *gray, const uint8_t *rgb, int w, int h, int tol)
{
	if (!gray || !rgb || w < 1 || h < 1 || w > 8192 || h > 8192 || tol < 0 || tol > 16)
		return AT_EINVAL;
	try {
		return edge_f1(gray, rgb, w, h, tol);
	} catch (...) {
		return AT_ENOMEM;
	}
}

/* ---- chamfer ---- */

#define EDT_INF 1e20f

/* Squared distance transform of one line (Felzenszwalb & Huttenlocher). */
static void edt_1d(const float *f, int n, float *d, int *v, float *z)
{
	int k = 0;
	v[0] = 0;
	z[0] = -EDT_INF;
	z[1] = EDT_INF;
	for (int q = 1; q < n; q++) {
		float s;
		for (;;) {
			int p = v[k];
			s = ((f[q] + (float)q * q) - (f[p] + (float)p * p)) / (2.0f * (float)(q - p));
			if (s <= z[k] && k > 0)
				k--;
			else
				break;
		}
		if (s <= z[k]) { /* k == 0: replace the only parabola */
			v[0] = q;
			z[1] = EDT_INF;
			continue;
		}
		k++;
		v[k] = q;
		z[k] = s;
		z[k + 1] = EDT_INF;
	}
	k = 0;
	for (int q = 0; q < n; q++) {
		while (z[k + 1] < (float)q)
			k++;
		float dq = (float)(q - v[k]);
		d[q] = dq * dq + f[v[k]];
	}
}

/* Euclidean distance (px) from every pixel to the nearest set pixel of m. */
static std::vector<float> edt(const std::vector<uint8_t> &m, int w, int h)
{
	int n = std::max(w, h);
	std::vector<float> g((size_t)w * h), f(n), d(n), z(n + 1);
	std::vector<int> v(n);
	for (size_t i = 0; i < g.size(); i++)
		g[i] = m[i] ? 0.0f : EDT_INF;
	for (int x = 0; x < w; x++) {
		for (int y = 0; y < h; y++)
			f[y] = g[(size_t)y * w + x];
		edt_1d(f.data(), h, d.data(), v.data(), z.data());
		for (int y = 0; y < h; y++)
			g[(size_t)y * w + x] = d[y];
	}
	for (int y = 0; y < h; y++) {
		edt_1d(&g[(size_t)y * w], w, d.data(), v.data(), z.data());
		for (int x = 0; x < w; x++)
			g[(size_t)y * w + x] = std::sqrt(d[x]);
	}
	return g;
}

static double chamfer(const uint8_t *gray, const uint8_t *rgb, int w, int h)
{
	size_t n = (size_t)w * h, ko, strong;
	std::vector<uint8_t> es, eo;
	size_t k = edge_sets(gray, rgb, w, h, es, eo, &ko, &strong);
	if (k == 0)
		return 0.0; /* nothing drawn: nothing to preserve */
	if (ko == 0)
		return std::sqrt((double)w * w + (double)h * h); /* a flat output: as far as can be */
	auto ds = edt(es, w, h), dout = edt(eo, w, h);
	double s_to_o = 0, o_to_s = 0;
	for (size_t i = 0; i < n; i++) {
		if (es[i])
			s_to_o += dout[i];
		if (eo[i])
			o_to_s += ds[i];
	}
	return 0.5 * (s_to_o / (double)k + o_to_s / (double)ko);
}

extern "C" double am_content_chamfer(const uint8_t *gray, const uint8_t *rgb, int w, int h)
{
	if (!gray || !rgb || w < 1 || h < 1 || w > 8192 || h > 8192)
		return AT_EINVAL;
	try {
		return chamfer(gray, rgb, w, h);
	} catch (...) {
		return AT_ENOMEM;
	}
}

/* ---- the fixed random feature net ---- */

namespace
{
/*
 * Three stride-2 3x3 convs with He-normal weights from a fixed seed, on the
 * image resized to 64x64. maps() gives each layer's activations (for the
 * LPIPS-like distance); pooled() the per-channel mean and std of each layer,
 * a 448-float feature per image (for KID and MMD).
 */
struct random_features {
	std::vector<torch::Tensor> w;
	random_features()
	{
		auto gen = at::make_generator<at::CPUGeneratorImpl>(0x41544c52u);
		int ch[] = {3, 32, 64, 128};
		for (int i = 0; i < 3; i++) {
			double std = std::sqrt(2.0 / (ch[i] * 9));
			w.push_back(torch::randn({ch[i + 1], ch[i], 3, 3}, gen, torch::kFloat) * std);
		}
	}
	std::vector<torch::Tensor> maps(const uint8_t *rgb, int n, int w_, int h_) const
	{
		size_t len = (size_t)w_ * h_ * 3;
		torch::Device cpu(torch::kCPU);
		std::vector<torch::Tensor> in;
		for (int i = 0; i < n; i++)
			in.push_back(am::resize(am::image_to_tensor(rgb + len * i, w_, h_, 3, cpu), 64, 64));
		auto x = torch::cat(in);
		std::vector<torch::Tensor> out;
		for (auto &k : w) {
			x = torch::relu(torch::conv2d(x, k, {}, 2, 1));
			out.push_back(x);
		}
		return out;
	}
	torch::Tensor pooled(const uint8_t *rgb, int n, int w_, int h_) const
	{
		std::vector<torch::Tensor> rows;
		size_t len = (size_t)w_ * h_ * 3;
		/* in chunks: 64 images at 64x64 keep the activations small */
		for (int i = 0; i < n; i += 64) {
			int m = std::min(64, n - i);
			std::vector<torch::Tensor> f;
			for (auto &x : maps(rgb + len * i, m, w_, h_)) {
				f.push_back(x.mean({2, 3}));
				f.push_back(x.std({2, 3}, false));
			}
			rows.push_back(torch::cat(f, 1));
		}
		return torch::cat(rows).to(torch::kDouble);
	}
};

const random_features &features()
{
	static const random_features feat;
	return feat;
}
} // namespace

/* ---- diversity ---- */

extern "C" int am_diversity(const uint8_t *rgbs, int n, int w, int h, double *out, am_status_t *st)
{
	if (!rgbs || !out || n < 0 || n > 100000)
		return am_fail(st, AT_EINVAL, "diversity needs 0..100000 images and an output");
	int rc = am::check_image_args(rgbs, w, h, st);
	if (rc < 0)
		return rc;
	*out = 0.0;
	if (n < 2)
		return am_ok(st);
	try {
		torch::NoGradGuard ng;
		auto layers = features().maps(rgbs, n, w, h);
		double sum = 0;
		for (auto &x : layers) {
			/* LPIPS's unit-normalisation along channels, without its learned weights */
			auto f = x / (x.square().sum(1, true).sqrt() + 1e-10);
			auto flat = f.flatten(1).to(torch::kDouble); /* (n, C*H*W) */
			double per = (double)f.size(2) * f.size(3) * f.size(1);
			/* sum over pairs i<j of |fi - fj|^2 from the Gram matrix */
			auto sq = flat.square().sum(1);
			auto gram = flat.matmul(flat.t());
			auto d = sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * gram;
			double pairs = (d.sum().item<double>() - d.diagonal().sum().item<double>()) / 2.0;
			sum += std::max(pairs, 0.0) / per;
		}
		*out = sum / (double)layers.size() / ((double)n * (n - 1) / 2);
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "diversity");
	}
}

/* ---- realism: KID and MMD on random features ---- */

static double mean_offdiag(const torch::Tensor &k)
{
	int64_t n = k.size(0);
	return (k.sum().item<double>() - k.diagonal().sum().item<double>()) / (double)(n * (n - 1));
}

static int realism_args(const uint8_t *gen_rgb, int n_gen, const uint8_t *real_rgb, int n_real, int w, int h,
			const void *out, am_status_t *st)
{
	if (!gen_rgb || !real_rgb || !out)
		return am_fail(st, AT_EINVAL, "NULL argument");
	if (n_gen < 2 || n_real < 2 || n_gen > 100000 || n_real > 100000)
		return am_fail(st, AT_EINVAL, "needs 2..100000 images in each set");
	return am::check_image_args(gen_rgb, w, h, st);
}

#define KID_BOOTSTRAPS 200
#define KID_SEED 0x4b49442d626f6f74ull

/*
 * Unbiased MMD^2 of sets drawn with multiplicities cx (of X) and cy (of Y):
 * pairs of distinct draws of the same element are left out of the within-set
 * sums, as the plain estimator leaves out i == j.
 */
static double mmd_weighted(const std::vector<double> &kxx, const std::vector<double> &kyy,
			   const std::vector<double> &kxy, const std::vector<int> &cx, const std::vector<int> &cy)
{
	size_t m = cx.size(), n = cy.size();
	double sxx = 0, syy = 0, sxy = 0, nxx = 0, nyy = 0, mx = 0, my = 0;
	for (size_t i = 0; i < m; i++) {
		mx += cx[i];
		nxx -= (double)cx[i] * cx[i];
		for (size_t j = 0; j < m; j++)
			if (i != j && cx[i] && cx[j])
				sxx += (double)cx[i] * cx[j] * kxx[i * m + j];
	}
	for (size_t i = 0; i < n; i++) {
		my += cy[i];
		nyy -= (double)cy[i] * cy[i];
		for (size_t j = 0; j < n; j++)
			if (i != j && cy[i] && cy[j])
				syy += (double)cy[i] * cy[j] * kyy[i * n + j];
	}
	for (size_t i = 0; i < m; i++)
		if (cx[i])
			for (size_t j = 0; j < n; j++)
				sxy += (double)cx[i] * cy[j] * kxy[i * n + j];
	nxx += mx * mx;
	nyy += my * my;
	if (nxx <= 0 || nyy <= 0)
		return NAN; /* every draw was the same element */
	return sxx / nxx + syy / nyy - 2.0 * sxy / (mx * my);
}

static std::vector<double> to_vec(const torch::Tensor &t)
{
	auto c = t.contiguous();
	return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

extern "C" int am_kid(const uint8_t *gen_rgb, int n_gen, const uint8_t *real_rgb, int n_real, int w, int h,
		      am_interval *out, am_status_t *st)
{
	int rc = realism_args(gen_rgb, n_gen, real_rgb, n_real, w, h, out, st);
	if (rc < 0)
		return rc;
	try {
		torch::NoGradGuard ng;
		auto x = features().pooled(gen_rgb, n_gen, w, h), y = features().pooled(real_rgb, n_real, w, h);
		double d = (double)x.size(1);
		auto k = [&](const torch::Tensor &a, const torch::Tensor &b) {
			return (a.matmul(b.t()) / d + 1.0).pow(3);
		};
		auto kxx = to_vec(k(x, x)), kyy = to_vec(k(y, y)), kxy = to_vec(k(x, y));
		std::vector<int> cx(n_gen, 1), cy(n_real, 1);
		out->value = mmd_weighted(kxx, kyy, kxy, cx, cy);
		/* Bootstrap: both sets resampled with replacement from a fixed seed,
		 * the 5th and 95th percentiles of the statistic. */
		uint64_t s = KID_SEED;
		std::vector<double> boots;
		for (int b = 0; b < KID_BOOTSTRAPS; b++) {
			std::fill(cx.begin(), cx.end(), 0);
			std::fill(cy.begin(), cy.end(), 0);
			for (int i = 0; i < n_gen; i++)
				cx[splitmix64_next(&s) % (uint64_t)n_gen]++;
			for (int j = 0; j < n_real; j++)
				cy[splitmix64_next(&s) % (uint64_t)n_real]++;
			double v = mmd_weighted(kxx, kyy, kxy, cx, cy);
			if (std::isfinite(v))
				boots.push_back(v);
		}
		if (boots.empty()) {
			out->lo = out->hi = out->value;
		} else {
			std::sort(boots.begin(), boots.end());
			size_t last = boots.size() - 1;
			out->lo = boots[(size_t)std::floor(0.05 * (double)last)];
			out->hi = boots[(size_t)std::ceil(0.95 * (double)last)];
		}
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "KID");
	}
}

extern "C" int am_realism_mmd(const uint8_t *gen_rgb, int n_gen, const uint8_t *real_rgb, int n_real, int w, int h,
			      double *mmd2, am_status_t *st)
{
	int rc = realism_args(gen_rgb, n_gen, real_rgb, n_real, w, h, mmd2, st);
	if (rc < 0)
		return rc;
	try {
		torch::NoGradGuard ng;
		auto x = features().pooled(gen_rgb, n_gen, w, h), y = features().pooled(real_rgb, n_real, w, h);
		auto dyy = torch::cdist(y, y).square();
		/* Bandwidth from the real set only: the same holdout set gives the same
		 * kernel to the candidate and the champion. */
		auto iu = torch::triu_indices(n_real, n_real, 1);
		auto upper = dyy.index({iu[0], iu[1]});
		double sigma2 = upper.median().item<double>();
		if (!(sigma2 > 0))
			sigma2 = 1.0;
		auto k = [&](const torch::Tensor &d2) { return torch::exp(-d2 / sigma2); };
		auto kxx = k(torch::cdist(x, x).square()), kyy = k(dyy), kxy = k(torch::cdist(x, y).square());
		*mmd2 = mean_offdiag(kxx) + mean_offdiag(kyy) - 2.0 * kxy.mean().item<double>();
		return am_ok(st);
	} catch (...) {
		return am_fail_current_exception(st, "realism MMD");
	}
}
