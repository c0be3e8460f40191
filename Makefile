# sluice -- build, test and demo.
#
#   make            build build/sluice-worker and build/sluicectl
#   make demo       deps, build, services up, run the ledger demo
#   make test       deps, build, unit tests, system tests (services up and down)
#   make unit       unit tests only (no services)
#   make deps       install what is missing (Debian packages, Kafka, test venv)
#   make install    PREFIX=/usr/local DESTDIR=
#
# SANITIZE=address,undefined builds everything with those sanitizers.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(PREFIX)/etc
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
PKG_CONFIG ?= pkg-config
CC         ?= cc
BUILD      ?= build

LIBS_PC  := rdkafka jansson libpq libconfig libpcre2-8 libmicrohttpd
TEST_PC  := cmocka

WARNINGS := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
            -Wpointer-arith -Wwrite-strings -Wsign-compare
BASE_CFLAGS := -std=gnu11 -O2 -g -pthread -D_GNU_SOURCE -Icommon -Iworkers \
               $(WARNINGS) -MMD -MP

comma := ,
SANITIZE ?=
ifneq ($(SANITIZE),)
  ifneq ($(filter-out address undefined thread,$(subst $(comma), ,$(SANITIZE))),)
    $(error SANITIZE accepts address, undefined and thread, comma-separated; got "$(SANITIZE)")
  endif
  SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  BUILD := build/san
endif

PC_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LIBS_PC) 2>/dev/null)
PC_LIBS   := $(shell $(PKG_CONFIG) --libs $(LIBS_PC) 2>/dev/null)
ALL_CFLAGS  = $(BASE_CFLAGS) $(SAN_FLAGS) $(PC_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = -pthread $(SAN_FLAGS) $(LDFLAGS)

COMMON_SRC  := $(sort $(wildcard common/*.c))
WORKERS_SRC := $(sort $(wildcard workers/*.c))
CTL_SRC     := $(sort $(wildcard cmd/ctl_*.c))
UNIT_SRC    := $(sort $(wildcard tests/unit/test_*.c))

LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(COMMON_SRC) $(WORKERS_SRC))
CTL_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(CTL_SRC))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.DELETE_ON_ERROR:
.PHONY: all deps check-deps unit test system demo bench bench-schema chaos fuzz install clean

all: check-deps $(BUILD)/sluice-worker $(BUILD)/sluicectl

# One clear line instead of a page of missing-header errors.
check-deps:
	@$(PKG_CONFIG) --exists $(LIBS_PC) || { echo "missing libraries: $$(for p in $(LIBS_PC); do $(PKG_CONFIG) --exists $$p || printf '%s ' $$p; done)-- run 'make deps'" >&2; exit 1; }

deps:
	@tests/deps

$(BUILD)/libsluice.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/sluice-worker: $(BUILD)/cmd/sluice-worker.o $(BUILD)/libsluice.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PC_LIBS) -lm

$(BUILD)/sluicectl: $(BUILD)/cmd/sluicectl.o $(CTL_OBJ) $(BUILD)/libsluice.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PC_LIBS) -lm

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# sluicectl migrate falls back to the installed migrations.
$(BUILD)/cmd/ctl_migrate.o: ALL_CFLAGS += -DSL_DATADIR=\"$(DATADIR)\"

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(shell $(PKG_CONFIG) --cflags $(TEST_PC)) -o $@ $< $(BUILD)/libsluice.a \
		$(ALL_LDFLAGS) $(PC_LIBS) $(shell $(PKG_CONFIG) --libs $(TEST_PC)) -lm

# The probe the ledger system tests drive: runs one handler in a transaction.
$(BUILD)/tests/ledger_probe: tests/tools/ledger_probe.c $(BUILD)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libsluice.a $(ALL_LDFLAGS) $(PC_LIBS) -lm

# Unit tests: no services; each binary is one module's cmocka suite.
unit: check-deps $(UNIT_BIN)
	@tests/run-unit $(UNIT_BIN)

# System tests: the real binaries against a throwaway PostgreSQL and Kafka.
system: all $(BUILD)/tests/ledger_probe
	@SLUICE_BIN_DIR=$(abspath $(BUILD)) SLUICE_LEDGER_PROBE=$(abspath $(BUILD)/tests/ledger_probe) tests/run-system

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory system

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo

# Fuzzing: libFuzzer targets built with clang (make deps installs it), run for
# FUZZ_TIME seconds each. New inputs go to build/fuzz/corpus; the regression
# and seed inputs kept in git are in tests/fuzz/corpus/ and are replayed too.
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_FLAGS := -std=gnu11 -O1 -g -D_GNU_SOURCE -Icommon -fsanitize=fuzzer,address,undefined \
              -fno-sanitize-recover=all $(shell $(PKG_CONFIG) --cflags jansson libpcre2-8 2>/dev/null)
FUZZ_LIBS  := $(shell $(PKG_CONFIG) --libs jansson libpcre2-8 2>/dev/null) -lm

build/fuzz/fuzz_schema: tests/fuzz/fuzz_schema.c $(wildcard common/schema*.c common/schema*.h) common/text.c common/text.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_schema.c $(wildcard common/schema*.c) common/text.c $(FUZZ_LIBS)

fuzz: build/fuzz/fuzz_schema
	@mkdir -p build/fuzz/corpus/schema
	build/fuzz/fuzz_schema -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix=build/fuzz/ build/fuzz/corpus/schema tests/fuzz/corpus/schema

# Benchmarks: microseconds per validation with the shipped job schemas.
$(BUILD)/bench/bench_schema: tests/bench/bench_schema.c $(BUILD)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libsluice.a $(ALL_LDFLAGS) $(PC_LIBS) -lm

bench-schema: check-deps $(BUILD)/bench/bench_schema
	@$(BUILD)/bench/bench_schema

# The throughput benchmark of issue 5 on throwaway services: jobs/s, latency,
# CPU and RSS per job beside pgbench's ceiling. BENCH_ARGS go to
# tests/bench/bench.py (e.g. BENCH_ARGS="--jobs 20000 --scaling").
bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/run $(BENCH_ARGS)

# The chaos soak: faults against a worker group, then every guarantee checked
# from the topics and tables. CHAOS_ARGS go to tests/chaos/chaos.py (e.g.
# CHAOS_ARGS="--short --seed 1"); see tests/chaos/README.md.
chaos: deps
	@$(MAKE) --no-print-directory all
	@tests/chaos/run $(CHAOS_ARGS)

# Units, man pages and the sample configuration name the installed paths:
# @SBINDIR@, @BINDIR@, @SYSCONFDIR@, @DATADIR@ and @VERSION@ in their sources
# are replaced here, and the sample's relative schema paths point at
# $(DATADIR)/sluice/jobs. An existing worker.conf is never overwritten.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/sluice \
		$(DESTDIR)$(DATADIR)/sluice/sql $(DESTDIR)$(DATADIR)/sluice/jobs \
		$(DESTDIR)$(DATADIR)/sluice/events $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 755 $(BUILD)/sluice-worker $(DESTDIR)$(SBINDIR)/sluice-worker
	install -m 755 $(BUILD)/sluicectl $(DESTDIR)$(BINDIR)/sluicectl
	test -e $(DESTDIR)$(SYSCONFDIR)/sluice/worker.conf || { \
		sed 's|"schemas/jobs/|"$(DATADIR)/sluice/jobs/|' worker.conf \
			> $(DESTDIR)$(SYSCONFDIR)/sluice/worker.conf && \
		chmod 644 $(DESTDIR)$(SYSCONFDIR)/sluice/worker.conf; }
	install -m 644 schemas/sql/*.sql $(DESTDIR)$(DATADIR)/sluice/sql/
	$(if $(wildcard schemas/jobs/*.json),install -m 644 $(wildcard schemas/jobs/*.json) $(DESTDIR)$(DATADIR)/sluice/jobs/)
	$(if $(wildcard schemas/events/*.json),install -m 644 $(wildcard schemas/events/*.json) $(DESTDIR)$(DATADIR)/sluice/events/)
	@version=$$(sed -n 's/^#define SL_VERSION "\(.*\)"/\1/p' common/version.h); \
	for src in systemd/sluice-worker@.service systemd/sluice-workers.target \
	           man/sluicectl.1 man/sluice.conf.5 man/sluice-worker.8; do \
		case $$src in \
		systemd/*) dst=$(DESTDIR)$(UNITDIR)/$${src#systemd/} ;; \
		*) dst=$(DESTDIR)$(MANDIR)/man$${src##*.}/$${src#man/} ;; \
		esac; \
		echo "install $$src $$dst"; \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' \
		    -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' \
		    -e "s|@VERSION@|$$version|g" $$src > $$dst && chmod 644 $$dst || exit 1; \
	done

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
