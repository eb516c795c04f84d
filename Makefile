# Atelier — build, test, run.
#
#   make          build every binary into $(BUILD)/bin
#   make test     install missing packages, build, run unit + integration tests,
#                 check the fuzz target list, that torch-free programs link no
#                 libtorch (scripts/check-no-torch.sh) and the layout (format-check)
#   make run      install missing packages, build, bring the whole system up
#   make asan     ASan+UBSan build in build-asan/ and the same tests against it
#   make chaos    ~10 min: CT cycles + serving load under random faults (kill -9,
#                 PostgreSQL restarts, read-only store, full spool disk); checks that
#                 nothing acknowledged is lost (root; docs/chaos.md). Not in make test
#   make hosts    the several-hosts rig (tests/hosts/, docs/hosts.md) with edge-1's
#                 full 60-s partition (make test runs it with 20 s); root
#   make tsan     TSan build of atelier-worker in build-tsan/ and the queue tests against it
#   make fuzz     libFuzzer targets (clang) in build-fuzz/, each run briefly
#                 (make fuzz-bins only builds them; tests/fuzz/README.md lists them)
#   make format   rewrite the C/C++ sources with clang-format 14 (.clang-format)
#   make format-check  list the files make format would change; fail if any
#   make bench    benchmarks under bench/, printing their figures
#   make deps     install missing Debian packages (no-op when all present)
#   make fresh-check  a Debian 12 root by debootstrap, README's commands in it as a
#                 new user would (root, network; slow; docs/deploy.md). Not in make test
#
# Sources are picked up by folder: lib/*.c is libatelier (shared by every
# binary); orchestrator/, workers/, serving/, cli/ each build one binary from
# their main.c plus the rest of the folder (kept in an archive so unit tests can
# link the same objects); models/*.cpp is the libtorch shim. tests/unit/test_*.c
# each become one test program.

BUILD ?= build
# Builds started by test, run and bench use every core (a torch unit takes 20-35 s).
NPROC := $(shell nproc 2>/dev/null || echo 2)
SAN ?=
CC ?= cc
CXX ?= g++
ifeq ($(CC),cc)
CC := gcc
endif

PKGS = libuv libpq yaml-0.1 libcurl jansson libh2o vips libpng libjpeg zlib openssl
# Expanded lazily so that `make deps` works before the packages exist.
PKG_CFLAGS = $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS)))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))

# The libtorch location: Debian's by default; TORCH_PREFIX points elsewhere
# (e.g. a pip PyTorch with CUDA: TORCH_PREFIX=$(python -c 'import torch,os;print(os.path.dirname(torch.__file__))')).
TORCH_PREFIX ?=
ifeq ($(TORCH_PREFIX),)
TORCH_INC = -isystem /usr/include/torch/csrc/api/include
TORCH_LIBS = -ltorch -ltorch_cpu -lc10
else
TORCH_INC = -isystem $(TORCH_PREFIX)/include -isystem $(TORCH_PREFIX)/include/torch/csrc/api/include
TORCH_LIBS = -L$(TORCH_PREFIX)/lib -Wl,-rpath,$(TORCH_PREFIX)/lib -Wl,--no-as-needed -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda -Wl,--as-needed
endif

# `make V=1` shows full command lines.
V ?= 0
ifeq ($(V),0)
Q = @
else
Q =
endif

OPT ?= -O2
SANFLAGS =
ifeq ($(SAN),1)
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT = -O1
endif
ifeq ($(SAN),fuzz)
SANFLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
OPT = -O1
endif

WARN = -Wall -Wextra -Werror -Wno-unused-parameter
ifneq ($(findstring clang,$(CC)),clang)
WARN += -Wno-format-truncation
endif
CFLAGS_ALL = -std=gnu11 $(WARN) $(OPT) -g -D_GNU_SOURCE -Ilib -Imodels -MMD -MP $(SANFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
CXXFLAGS_ALL = -std=gnu++17 $(WARN) $(OPT) -g -D_GNU_SOURCE -Ilib -Imodels -MMD -MP $(SANFLAGS) $(TORCH_INC) $(EXTRA_CXXFLAGS)
LDFLAGS_ALL = $(SANFLAGS) -Wl,--as-needed $(EXTRA_LDFLAGS)
SYSLIBS = $(PKG_LIBS) -lm -lpthread

LIB_SRC = $(wildcard lib/*.c)
MODEL_SRC = $(wildcard models/*.cpp)
ORCH_SRC = $(filter-out orchestrator/main.c,$(wildcard orchestrator/*.c))
WORK_SRC = $(filter-out workers/main.c,$(wildcard workers/*.c))
SERVE_SRC = $(filter-out serving/main.c,$(wildcard serving/*.c))
CLI_SRC = $(filter-out cli/main.c,$(wildcard cli/*.c))
UNIT_SRC = $(wildcard tests/unit/test_*.c)
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c tests/fuzz/fuzz_*.cpp)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(patsubst %.cpp,$(BUILD)/obj/%.o,$(1)))

LIBATELIER = $(BUILD)/libatelier.a
# The sanitizer build links the ordinary model archive (libtorch itself is not
# instrumented, and the shim takes minutes to compile): LIBMODEL_PREBUILT.
LIBMODEL_PREBUILT ?=
LIBMODEL = $(if $(LIBMODEL_PREBUILT),$(LIBMODEL_PREBUILT),$(BUILD)/libatelier_model.a)
LIBORCH = $(BUILD)/liborchestrator.a
LIBWORK = $(BUILD)/libworkers.a
LIBSERVE = $(BUILD)/libserving.a
LIBCLI = $(BUILD)/libcli.a

# A binary is built once its folder has a main.c.
BINS = $(if $(wildcard orchestrator/main.c),$(BUILD)/bin/atelierd) \
       $(if $(wildcard workers/main.c),$(BUILD)/bin/atelier-worker) \
       $(if $(wildcard serving/main.c),$(BUILD)/bin/atelier-serve) \
       $(if $(wildcard cli/main.c),$(BUILD)/bin/atelier)
UNIT_BINS = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps test unit chaos hosts run fresh-check asan tsan fuzz fuzz-bins fuzz-link bench clean format format-check FORCE
# Keep intermediate objects (test .o files) so make does not rebuild them every time.
.SECONDARY:
BENCH_BINS = $(BUILD)/bench/bench_ingest $(BUILD)/bench/bench_gallery $(BUILD)/bench/bench_longpoll $(BUILD)/bench/bench_serve $(BUILD)/bench/recipe \
	     $(BUILD)/bench/bench_queue $(BUILD)/bench/bench_train $(BUILD)/bench/gang_rank
all: $(BINS) $(UNIT_BINS) $(BENCH_BINS)

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX     $<")
	$(Q)$(CXX) $(CXXFLAGS_ALL) -c $< -o $@

# The worker's code version (workers/cache.h): a content hash over the sources
# that decide job results, so the step cache never lends a result computed by
# other code. Recomputed on every make, written only when it changed, so an
# unchanged tree rebuilds nothing; a dirty tree gets its own hash.
CODE_VERSION_SRC = $(sort $(wildcard workers/*.c workers/*.h models/*.cpp models/*.hpp models/*.h lib/*.c lib/*.h))
$(BUILD)/gen/code_version.h: FORCE
	@mkdir -p $(dir $@)
	@v=$$(sha256sum $(CODE_VERSION_SRC) | sha256sum | cut -c1-64); \
	 printf '/* generated by the Makefile: sha256 over workers/, models/, lib/ */\n#define ATELIER_CODE_VERSION "%s"\n' "$$v" > $@.tmp; \
	 if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/obj/workers/cache.o: $(BUILD)/gen/code_version.h
# c10d's Gloo declarations sit behind USE_C10D_GLOO (libtorch was built with
# it; the gloo headers come from libgloo-dev).
$(BUILD)/obj/models/am_dist.o: CXXFLAGS_ALL += -DUSE_C10D_GLOO
$(BUILD)/obj/workers/cache.o: CFLAGS_ALL += -I$(BUILD)/gen
# `atelier --version`: the release and `git describe` of the tree it was built
# from (rewritten only when either changes, so main.o is not rebuilt each make).
RELEASE = 0.1.0
$(BUILD)/gen/cli_version.h: FORCE
	@mkdir -p $(dir $@)
	@d=$$(git describe --always --dirty 2>/dev/null || echo unknown); \
	 printf '/* generated by the Makefile */\n#define ATELIER_RELEASE "%s"\n#define ATELIER_GIT_DESCRIBE "%s"\n' \
	 "$(RELEASE)" "$$d" > $@.tmp; \
	 if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/obj/cli/main.o: $(BUILD)/gen/cli_version.h
$(BUILD)/obj/cli/main.o: CFLAGS_ALL += -I$(BUILD)/gen
FORCE:

$(LIBATELIER): $(call obj,$(LIB_SRC))
ifeq ($(LIBMODEL_PREBUILT),)
$(LIBMODEL): $(call obj,$(MODEL_SRC))
endif
$(LIBORCH): $(call obj,$(ORCH_SRC))
$(LIBWORK): $(call obj,$(WORK_SRC))
$(LIBSERVE): $(call obj,$(SERVE_SRC))
$(LIBCLI): $(call obj,$(CLI_SRC))
$(BUILD)/lib%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	@$(if $(Q),echo "  AR      $@")
	$(Q)ar rcs $@ $^ $(if $^,,$(BUILD)/obj/empty.o)

# An archive may be empty while a folder is still being built up.
$(BUILD)/obj/empty.o:
	@mkdir -p $(dir $@)
	echo 'int atelier_empty_archive_member;' | $(CC) -x c -c - -o $@

ALL_ARCHIVES = $(LIBORCH) $(LIBWORK) $(LIBSERVE) $(LIBCLI) $(LIBMODEL) $(LIBATELIER)
$(ALL_ARCHIVES): | $(BUILD)/obj/empty.o

$(BUILD)/bin/atelierd: $(BUILD)/obj/orchestrator/main.o $(LIBORCH) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

$(BUILD)/bin/atelier: $(BUILD)/obj/cli/main.o $(LIBCLI) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

# Binaries that run the model link libtorch through the C++ driver.
$(BUILD)/bin/atelier-worker: $(BUILD)/obj/workers/main.o $(LIBWORK) $(LIBMODEL) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS_ALL) -o $@ $^ $(TORCH_LIBS) $(SYSLIBS)

$(BUILD)/bin/atelier-serve: $(BUILD)/obj/serving/main.o $(LIBSERVE) $(LIBMODEL) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS_ALL) -o $@ $^ $(TORCH_LIBS) $(SYSLIBS)

# Unit tests link every archive; the linker only pulls what each one uses, and
# --as-needed keeps libtorch out of tests that do not touch the model.
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(ALL_ARCHIVES)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS_ALL) -o $@ $< $(ALL_ARCHIVES) $(TORCH_LIBS) $(SYSLIBS)

# ---- tests ----

test:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@ATELIER_BUILD=$(BUILD) tests/run.sh $(TESTS)
	@scripts/check-fuzz-list.sh
	@scripts/check-no-torch.sh $(BUILD)
	@$(MAKE) --no-print-directory format-check

unit: all
	@ATELIER_BUILD=$(BUILD) tests/run.sh -k unit

# CHAOS_SEED, CHAOS_SECONDS (fault phase, default 420) and CHAOS_REPORT (JSON out) pass through.
chaos: all
	@ATELIER_BUILD=$(BUILD) tests/chaos/run.sh

# HOSTS_EDGE_PARTITION_S (default 60), HOSTS_SCENARIOS, HOSTS_REPORT and
# ATELIER_HOSTS_ARTIFACTS pass through (tests/hosts/hosts.py says what they do).
hosts: all
	@ATELIER_BUILD=$(BUILD) OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tests/hosts/hosts.py

asan:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory build/libatelier_model.a
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 LIBMODEL_PREBUILT=build/libatelier_model.a all
	@ATELIER_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_odr_violation=0 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run.sh $(TESTS)

# ThreadSanitizer for atelier-worker, the one multi-threaded binary (slot
# threads, the supervisor): its C code instrumented (libtorch is not; the
# queue tests' job kinds never enter it), then the queue tests against it. A
# race makes the worker exit 66, and the test that ran it fails. Thread leaks
# are not reported: when the grace period runs out the worker releases the
# jobs and leaves with _exit(), its handlers still running, on purpose.
tsan:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory build/libatelier_model.a
	@$(MAKE) --no-print-directory BUILD=build-tsan EXTRA_CFLAGS=-fsanitize=thread EXTRA_LDFLAGS=-fsanitize=thread \
		LIBMODEL_PREBUILT=build/libatelier_model.a build-tsan/bin/atelier-worker
	@ATELIER_BUILD=build-tsan TSAN_OPTIONS=halt_on_error=1:exitcode=66:report_thread_leaks=0 OMP_WAIT_POLICY=PASSIVE \
		/usr/bin/python3 -m pytest -p no:cacheprovider -q -ra tests/test_queue.py $(TESTS)

# libFuzzer targets: one per parser (tests/fuzz/README.md lists them; make
# test checks the list). Built with clang in build-fuzz/. No parser needs the
# model any more (the spool left the contribute handler): the rule links
# neither the model archive nor libtorch, so a target that reached the model
# would fail to link, and scripts/check-no-torch.sh checks what was linked.
FUZZ_BINS = $(patsubst tests/fuzz/%,build-fuzz/fuzz/%,$(basename $(FUZZ_SRC)))
fuzz: fuzz-bins
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p tests/fuzz/corpus-$$n; \
		echo "fuzz: $$n"; $$f -max_total_time=$${FUZZ_SECONDS:-20} -max_len=65536 tests/fuzz/corpus-$$n tests/fuzz/seeds/$$n || exit 1; done

fuzz-bins:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory BUILD=build-fuzz SAN=fuzz CC=clang CXX=clang++ fuzz-link
	@scripts/check-no-torch.sh none

fuzz-link: $(FUZZ_BINS)
build-fuzz/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(LIBORCH) $(LIBSERVE) $(LIBWORK) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -fsanitize=fuzzer,address,undefined -Wl,--as-needed -o $@ $^ $(SYSLIBS)

# The model file's reader on its own: the shim's three units that need no
# libtorch (c10's headers only, for the exception boundary; nothing of torch
# ends up NEEDED).
FUZZ_MODEL_OBJ = $(call obj,models/am_file.cpp models/am_config.cpp models/am_status.cpp)
build-fuzz/fuzz/fuzz_model_file: $(BUILD)/obj/tests/fuzz/fuzz_model_file.o $(FUZZ_MODEL_OBJ) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -fsanitize=fuzzer,address,undefined -Wl,--as-needed -o $@ $^ $(TORCH_LIBS) $(SYSLIBS)

bench:
	@scripts/deps.sh deps.txt deps-bench.txt
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@bench/run.sh

# ---- run ----

run:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@scripts/run.sh

# ---- the proof that a fresh machine needs nothing else (docs/deploy.md) ----
fresh-check:
	@scripts/fresh-check.sh

# ---- layout: clang-format 14 with .clang-format ----
CLANG_FORMAT ?= clang-format
FORMAT_SRC = $(wildcard lib/*.[ch] orchestrator/*.[ch] serving/*.[ch] workers/*.[ch] cli/*.[ch] models/*.h models/*.hpp \
		models/*.cpp tests/unit/*.[ch] tests/fuzz/*.c tests/fuzz/*.cpp bench/*.h bench/*/*.c)
format:
	$(CLANG_FORMAT) -i $(FORMAT_SRC)

# Lists the files `make format` would change and fails if there are any.
format-check:
	@$(CLANG_FORMAT) --dump-config >/dev/null || { echo "format-check: $(CLANG_FORMAT) cannot read .clang-format"; exit 1; }
	@$(CLANG_FORMAT) --version | grep -q 'version 14\.' || echo "format-check: not clang-format 14; its layout may differ"
	@bad=$$($(CLANG_FORMAT) --dry-run -Werror --ferror-limit=1 $(FORMAT_SRC) 2>&1 | \
		sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' | sort -u); \
	if [ -n "$$bad" ]; then echo "format-check: $$(echo "$$bad" | wc -l) files differ from .clang-format (make format rewrites them):"; \
		echo "$$bad" | sed 's/^/  /'; exit 1; fi

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- benchmarks (programs under bench/*/bench_*.c link libatelier) ----
# `all` builds them too, so that a change to the library that breaks a
# bench's build fails `make` (and CI), not the next `make bench`.
$(BUILD)/bench/bench_ingest: $(BUILD)/obj/bench/ingest/bench_ingest.o $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

$(BUILD)/bench/bench_gallery: $(BUILD)/obj/bench/gallery/bench_gallery.o $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

$(BUILD)/bench/bench_serve: $(BUILD)/obj/bench/serve/bench_serve.o $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

# The PNG peers (libspng, libdeflate) are bench-only packages (deps-bench.txt):
# `all` builds bench_image where they are installed, `make bench` installs them.
BENCH_IMAGE_LIBS = spng libdeflate
ifeq ($(shell pkg-config --exists $(BENCH_IMAGE_LIBS) && echo y),y)
all: $(BUILD)/bench/bench_image
endif
$(BUILD)/obj/bench/image/bench_image.o: CFLAGS_ALL += $(shell pkg-config --cflags $(BENCH_IMAGE_LIBS))
$(BUILD)/bench/bench_image: $(BUILD)/obj/bench/image/bench_image.o $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(shell pkg-config --libs $(BENCH_IMAGE_LIBS)) $(SYSLIBS)

# ---- atelierd: orchestrator/ui.c embeds ui/* and Chart.js (Debian's libjs-chart.js,
# copied at build time, never committed) with .incbin, which -MMD does not see ----
UI_CHART_SRC ?= /usr/share/javascript/chart.js/chart.js
$(BUILD)/gen/ui/chart.js: $(wildcard $(UI_CHART_SRC))
	@mkdir -p $(dir $@)
	$(Q)if [ -r "$(UI_CHART_SRC)" ]; then cp "$(UI_CHART_SRC)" $@; else \
	  echo "warning: $(UI_CHART_SRC) missing (Debian package libjs-chart.js): dashboard charts off" >&2; \
	  printf '/* libjs-chart.js was not installed at build time */\n' > $@; fi
$(BUILD)/obj/orchestrator/ui.o: $(wildcard ui/*) $(BUILD)/gen/ui/chart.js
$(BUILD)/obj/orchestrator/ui.o: CFLAGS_ALL += -DATELIER_UI_CHART_JS='"$(BUILD)/gen/ui/chart.js"'
# ---- atelier-serve: serving/web.c embeds web/* with .incbin, which -MMD does not see ----
$(BUILD)/obj/serving/web.o: $(wildcard web/*)

$(BUILD)/bench/bench_longpoll: $(BUILD)/obj/bench/longpoll/bench_longpoll.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

# Threads over lib/queue.c against PostgreSQL (bench/queue/run.sh).
$(BUILD)/bench/bench_queue: $(BUILD)/obj/bench/queue/bench_queue.o $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(SYSLIBS)

# The model shim's step and inference times (bench/train/run.sh).
$(BUILD)/bench/bench_train: $(BUILD)/obj/bench/train/bench_train.o $(LIBMODEL) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS_ALL) -o $@ $^ $(TORCH_LIBS) $(SYSLIBS)

# One rank of a data-parallel run (tests/test_gang.py, bench/gang/run.sh).
$(BUILD)/bench/gang_rank: $(BUILD)/obj/bench/gang/gang_rank.o $(LIBMODEL) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS_ALL) -o $@ $^ $(TORCH_LIBS) $(SYSLIBS)

# The training recipe's measurement (docs/training.md, "The CPU recipe").
$(BUILD)/bench/recipe: $(BUILD)/obj/bench/train/recipe.o $(LIBMODEL) $(LIBATELIER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS_ALL) -o $@ $^ $(TORCH_LIBS) $(SYSLIBS)
