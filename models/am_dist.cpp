/*
 * am_dist.cpp — data-parallel training over torch.distributed's c10d: the
 * rendezvous store (TCPStore, hosted by rank 0), the Gloo process group, the
 * broadcast that makes every rank's trainer a replica of rank 0's, and the
 * gradient average the trainer calls after each backward pass.
 *
 * Its own translation unit so that a change here rebuilds one torch unit.
 * Ownership: an am_dist owns the store and the group through intrusive
 * pointers; an attached trainer holds one more reference to the group (its
 * mean() closure), so freeing the am_dist first leaves the trainer working.
 *
 * Failure: Gloo raises when a peer's connection breaks (a dead rank: at
 * once) or when a collective outlives the group's timeout (a stalled rank);
 * both become AT_E* codes at the boundary. After one, the group is not
 * reused: the caller frees it and the job is retried as a whole gang.
 */
#include <chrono>
#include <cstring>
#include <memory>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "err.h"
#include "munit.hpp"

#ifndef USE_C10D_GLOO
#error "am_dist.cpp needs libtorch's c10d Gloo (USE_C10D_GLOO and the gloo headers: libgloo-dev)"
#endif

namespace
{
/* What the collectives cost; shared with the trainer's closure. */
struct Stats {
	uint64_t allreduces = 0, bytes = 0;
	double seconds = 0;
};
} // namespace

struct am_dist {
	int rank = 0, world = 1, timeout_ms = 0;
	c10::intrusive_ptr<c10d::TCPStore> store;
	c10::intrusive_ptr<c10d::ProcessGroup> pg;
	std::shared_ptr<Stats> stats = std::make_shared<Stats>();
};

/* ---- errors ---- */

/*
 * Gloo reports a dead peer as an IO error ("Connection closed by peer",
 * "Connection reset") and a stalled one as a timeout; the store says
 * "Socket Timeout" or refuses the connection. The code tells the caller
 * what happened to the group, the message keeps libtorch's words.
 */
static int fail_dist(am_status_t *st, const char *what)
{
	try {
		throw;
	} catch (const c10::Error &e) {
		std::string m = e.what_without_backtrace();
		int code = AT_EUNAVAILABLE;
		if (m.find("imeout") != std::string::npos || m.find("imed out") != std::string::npos)
			code = AT_ETIMEOUT;
		return am_fail(st, code, std::string(what) + ": " + m);
	} catch (const std::bad_alloc &) {
		return am_fail(st, AT_ENOMEM, std::string(what) + ": out of memory");
	} catch (const std::exception &e) {
		std::string m = e.what();
		int code = m.find("imeout") != std::string::npos ? AT_ETIMEOUT : AT_EUNAVAILABLE;
		return am_fail(st, code, std::string(what) + ": " + m);
	} catch (...) {
		return am_fail(st, AT_EINTERNAL, std::string(what) + ": unknown exception");
	}
}

/* ---- collectives on flat buffers ---- */

/*
 * Copies tensors (any devices, float or int64, all one dtype) into one flat
 * host buffer, so that a list of ~100 gradients costs one collective.
 */
static torch::Tensor flatten(const std::vector<torch::Tensor> &v)
{
	std::vector<torch::Tensor> flat;
	flat.reserve(v.size());
	for (auto &t : v)
		flat.push_back(t.detach().reshape({-1}).to(torch::kCPU));
	return torch::cat(flat);
}

static void unflatten(const torch::Tensor &flat, std::vector<torch::Tensor> &v)
{
	torch::NoGradGuard ng;
	int64_t off = 0;
	for (auto &t : v) {
		int64_t n = t.numel();
		t.copy_(flat.narrow(0, off, n).view(t.sizes()));
		off += n;
	}
}

static void run(c10::intrusive_ptr<c10d::Work> w, int timeout_ms)
{
	if (!w->wait(std::chrono::milliseconds(timeout_ms)))
		throw std::runtime_error("collective timed out");
}

/* Mean across the group of v (same shapes on every rank), in place. */
static void mean_of(c10d::ProcessGroup &pg, int timeout_ms, Stats &stats, std::vector<torch::Tensor> &v)
{
	if (v.empty())
		return;
	auto t0 = std::chrono::steady_clock::now();
	std::vector<torch::Tensor> buf{flatten(v)};
	run(pg.allreduce(buf), timeout_ms);
	buf[0].div_(pg.getSize());
	unflatten(buf[0], v);
	stats.allreduces++;
	stats.bytes += (uint64_t)buf[0].numel() * buf[0].element_size();
	stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static void broadcast(c10d::ProcessGroup &pg, int timeout_ms, std::vector<torch::Tensor> &v)
{
	if (v.empty())
		return;
	std::vector<torch::Tensor> buf{flatten(v)};
	c10d::BroadcastOptions o;
	o.rootRank = 0;
	run(pg.broadcast(buf, o), timeout_ms);
	unflatten(buf[0], v);
}

/* ---- the group ---- */

static int check_world(int rank, int world, int timeout_ms, am_status_t *st)
{
	if (world < 1 || world > 1024)
		return am_fail(st, AT_ERANGE, "world " + std::to_string(world) + " is outside 1..1024");
	if (rank < 0 || rank >= world)
		return am_fail(st, AT_ERANGE,
			       "rank " + std::to_string(rank) + " is outside 0.." + std::to_string(world - 1));
	if (timeout_ms < 100)
		return am_fail(st, AT_ERANGE, "timeout_ms " + std::to_string(timeout_ms) + " is below 100");
	return 0;
}

static am_dist *open_store(const char *host, int port, int rank, int world, int timeout_ms, am_status_t *st)
{
	if (!host || !*host) {
		am_fail(st, AT_EINVAL, "store host is empty");
		return nullptr;
	}
	if (port < 0 || port > 65535 || (rank > 0 && port == 0)) {
		am_fail(st, AT_ERANGE, "store port " + std::to_string(port) + " is outside 1..65535");
		return nullptr;
	}
	if (check_world(rank, world, timeout_ms, st) < 0)
		return nullptr;
	auto d = std::make_unique<am_dist>();
	d->rank = rank;
	d->world = world;
	d->timeout_ms = timeout_ms;
	c10d::TCPStoreOptions o;
	o.port = (uint16_t)port;
	o.isServer = rank == 0;
	o.numWorkers = world;
	/* Rank 0 must return before the others connect: it publishes the port
	 * only after listen, and they learn it from the queue. */
	o.waitWorkers = false;
	o.timeout = std::chrono::milliseconds(timeout_ms);
	d->store = c10::make_intrusive<c10d::TCPStore>(host, o);
	am_ok(st);
	return d.release();
}

extern "C" am_dist *am_dist_listen(const char *bind_host, int port, int world, int timeout_ms, am_status_t *st)
{
	try {
		return open_store(bind_host, port, 0, world, timeout_ms, st);
	} catch (...) {
		fail_dist(st, "hosting the rendezvous store");
		return nullptr;
	}
}

extern "C" am_dist *am_dist_connect(const char *host, int port, int rank, int world, int timeout_ms, am_status_t *st)
{
	if (rank == 0) {
		am_fail(st, AT_EINVAL, "rank 0 hosts the store: am_dist_listen");
		return nullptr;
	}
	try {
		return open_store(host, port, rank, world, timeout_ms, st);
	} catch (...) {
		fail_dist(st, "connecting to the rendezvous store");
		return nullptr;
	}
}

extern "C" int am_dist_port(const am_dist *d) { return d && d->store ? (int)d->store->getPort() : 0; }
extern "C" int am_dist_rank(const am_dist *d) { return d ? d->rank : 0; }
extern "C" int am_dist_world(const am_dist *d) { return d ? d->world : 0; }

extern "C" int am_dist_join(am_dist *d, const char *my_host, am_status_t *st)
{
	if (!d)
		return am_fail(st, AT_EINVAL, "group is NULL");
	if (d->pg)
		return am_fail(st, AT_EINVAL, "group already joined");
	try {
		auto o = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(d->timeout_ms));
		o->devices.push_back(my_host && *my_host ? c10d::ProcessGroupGloo::createDeviceForHostname(my_host)
							 : c10d::ProcessGroupGloo::createDefaultDevice());
		d->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(d->store, d->rank, d->world, o);
		return am_ok(st);
	} catch (...) {
		return fail_dist(st, "forming the process group");
	}
}

extern "C" void am_dist_free(am_dist *d)
{
	try {
		delete d;
	} catch (...) {
	}
}

/* ---- trainers ---- */

static int attach(am_dist *d, am_trainer *t, am_status_t *st)
{
	auto &pg = *d->pg;
	/* Configs must agree: compare rank 0's text with ours (its length and
	 * bytes, broadcast as int64 so one code path serves). */
	am_config cfg;
	am_trainer_get_config(t, &cfg);
	snprintf(cfg.device, sizeof cfg.device, "%s", "any"); /* ranks may sit on different devices */
	cfg.threads = 0;
	char *js = am_config_to_json(&cfg);
	if (!js)
		return am_fail(st, AT_ENOMEM, "config text");
	std::string mine(js);
	free(js);
	std::vector<int64_t> text(mine.begin(), mine.end());
	std::vector<torch::Tensor> len{torch::tensor({(int64_t)text.size()}, torch::kLong)};
	broadcast(pg, d->timeout_ms, len);
	int64_t n0 = len[0].item<int64_t>();
	std::vector<torch::Tensor> txt{torch::zeros({n0}, torch::kLong)};
	if (d->rank == 0)
		txt[0].copy_(torch::tensor(text, torch::kLong));
	broadcast(pg, d->timeout_ms, txt);
	std::vector<torch::Tensor> same{torch::tensor({(int64_t)(n0 == (int64_t)text.size() &&
								 txt[0].equal(torch::tensor(text, torch::kLong)))},
						      torch::kLong)};
	/* Every rank learns whether all agree, so that all fail together. */
	run(pg.allreduce(same, c10d::AllreduceOptions{c10d::ReduceOp::MIN}), d->timeout_ms);
	if (same[0].item<int64_t>() != 1)
		return am_fail(st, AT_ECONFLICT, "the ranks' training configs differ (rank 0's: " + mine + ")");

	/* Rank 0's state: step and Adam slots first (they decide which tensors
	 * exist), then every tensor, then the RNG. */
	std::vector<torch::Tensor> meta{am::trainer_meta(t)};
	broadcast(pg, d->timeout_ms, meta);
	if (d->rank != 0)
		am::trainer_set_meta(t, meta[0]);
	auto state = am::trainer_tensors(t);
	broadcast(pg, d->timeout_ms, state);
	auto &gen = am::trainer_rng(t);
	std::vector<torch::Tensor> rng{gen.get_state().to(torch::kLong)};
	broadcast(pg, d->timeout_ms, rng);
	if (d->rank != 0)
		gen.set_state(rng[0].to(torch::kByte));

	am::TrainerDist td;
	td.rank = d->rank;
	td.world = d->world;
	auto pgp = d->pg;
	auto stats = d->stats;
	int tmo = d->timeout_ms;
	td.mean = [pgp, stats, tmo](std::vector<torch::Tensor> &v) { mean_of(*pgp, tmo, *stats, v); };
	am::trainer_set_dist(t, std::move(td));
	return am_ok(st);
}

extern "C" int am_dist_attach(am_dist *d, am_trainer *t, am_status_t *st)
{
	if (!d || !t)
		return am_fail(st, AT_EINVAL, "NULL argument");
	if (!d->pg)
		return am_fail(st, AT_EINVAL, "group not joined (am_dist_join)");
	try {
		return attach(d, t, st);
	} catch (...) {
		return fail_dist(st, "making the trainers replicas");
	}
}

extern "C" int am_dist_mean(am_dist *d, double *v, int n, am_status_t *st)
{
	if (!d || !d->pg || (!v && n > 0) || n < 0)
		return am_fail(st, AT_EINVAL, "bad argument");
	try {
		std::vector<torch::Tensor> t{torch::from_blob(v, {n}, torch::kDouble)};
		mean_of(*d->pg, d->timeout_ms, *d->stats, t);
		return am_ok(st);
	} catch (...) {
		return fail_dist(st, "mean across the group");
	}
}

extern "C" int am_dist_barrier(am_dist *d, am_status_t *st)
{
	if (!d || !d->pg)
		return am_fail(st, AT_EINVAL, "group not joined");
	try {
		/* Gloo's barrier; an all-reduce of one value would do the same. */
		run(d->pg->barrier(), d->timeout_ms);
		return am_ok(st);
	} catch (...) {
		return fail_dist(st, "barrier");
	}
}

extern "C" void am_dist_get_stats(const am_dist *d, am_dist_stats *out)
{
	if (!out)
		return;
	*out = am_dist_stats{};
	if (!d)
		return;
	out->allreduces = d->stats->allreduces;
	out->bytes = d->stats->bytes;
	out->seconds = d->stats->seconds;
}
