# Makefile for the webhooks extension (PGXS)

MODULE_big = webhooks
OBJS = \
	src/webhooks.o \
	src/guc.o \
	src/validate.o \
	src/signing.o \
	src/api.o \
	src/address.o \
	src/http.o \
	src/ping.o \
	src/emit.o \
	src/append.o \
	src/queue.o \
	src/reader.o \
	src/subscriptions.o \
	src/partitions.o \
	src/launcher.o \
	src/vacuum.o \
	src/worker.o

EXTENSION = webhooks
DATA = sql/webhooks--1.0.sql sql/webhooks--1.0--1.0.1.sql \
	sql/webhooks--1.0.1--1.1.sql
PGFILEDESC = "webhooks - reliable outgoing webhooks for PostgreSQL"

REGRESS = create management errors logs emit events lifecycle security
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=test/regress.conf
ISOLATION = reader event_types
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=test/regress.conf

TAP_TESTS = 1

# Asked only when building, and quietly: on a fresh machine curl-config
# appears once the scripts behind demo and test have installed libcurl.
PG_CPPFLAGS = -Isrc $(shell curl-config --cflags 2>/dev/null)
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK = $(shell curl-config --libs 2>/dev/null) -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# A fresh machine has no server headers yet: the scripts behind demo, test
# and bench install them; building needs them first.
all install installcheck:
	@echo "PostgreSQL 15 server headers are missing: run 'make demo' or 'make test' (they install what is missing), or apt-get install postgresql-server-dev-15" >&2; exit 1
endif

# PGXS tracks no header dependencies: rebuild every object when a header
# changes, or a struct's layout differs between files.
$(OBJS): $(wildcard src/*.h)

# The README's two commands; both install what a fresh machine lacks.
.PHONY: test demo bench
test:
	test/run-tests.sh

demo:
	test/demo.sh

bench:
	test/bench.sh
