# bulkhead — everything a fresh machine needs is installed by these targets.
SHELL := /bin/bash
SWIFT      ?= swift
CONFIG     ?= debug
BUILD_LOG  := .build/last-build.log
# etcd-server: the real etcd the EtcdTests start (3.4, /usr/bin/etcd; never run as a
# service); openssl: the CA and certificates of their TLS tests.
APT_PACKAGES := liblua5.4-dev pkg-config libsqlite3-dev etcd-server etcd-client openssl

.PHONY: all deps build test unit etcd-test etcd-host etcd-tls fleet fleet-short fleet-rollout fleet-scale integration chaos chaos-short api-check live-fuzz fuzz run bench e2e clean

all: build

## deps: install the system packages the build needs, when missing (Debian, as root);
## services stay down (a policy-rc.d refusing starts, so etcd-server starts no system etcd).
deps:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  policy=/usr/sbin/policy-rc.d; made_policy=""; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && made_policy=1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; status=$$?; \
	  if [ -n "$$made_policy" ]; then rm -f $$policy; fi; \
	  exit $$status; \
	fi

## build: build every product; fails on any compiler warning in our own code.
build: deps
	@mkdir -p .build
	$(SWIFT) build -c $(CONFIG) --build-tests 2>&1 | tee $(BUILD_LOG); test $${PIPESTATUS[0]} -eq 0
	@if grep -E "^$(CURDIR)/(Sources|Tests)/.*: warning:" $(BUILD_LOG); then \
	  echo "error: the build has warnings (above)"; exit 1; fi

## test: unit tests in parallel (the parser fuzzers included, fixed seed, 10,000
## cases each), the etcd suites, the integration suites one at a time, the fleet on
## etcd (host, TLS, short fleet run, fleet rollouts), the short chaos run,
## schemathesis against the live API, then a short live fuzz of the pools' and the
## ingress's HTTP parsing.
test: build unit etcd-test integration etcd-host etcd-tls fleet-short fleet-rollout chaos-short api-check live-fuzz

## unit: every suite but the integration and the etcd tests, in parallel.
unit:
	$(SWIFT) test -c $(CONFIG) --skip-build --skip IntegrationTests --skip EtcdTests --skip EtcdStoreTests

## etcd-test: the etcd client's and the etcd store's tests, against the real etcd
## processes they start on free loopback ports; one suite at a time (their failover and
## lease timings are generous, but not for every other suite running beside them).
etcd-test: build
	$(SWIFT) test -c $(CONFIG) --skip-build --no-parallel --filter 'EtcdTests|EtcdStoreTests'

## etcd-host: `bulkhead serve --etcd` end to end against a real etcd (scripts/etcd-host):
## follows uploads by watch, fail static with etcd gone, restart while it is down,
## resync after a compaction past the host.
etcd-host: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/etcd-host

## etcd-tls: the fleet's store behind TLS with client certificates and per-host users and
## roles (scripts/etcd-tls): control and a host work with their own identities; a host
## cannot write another host's key or the desired state; no certificate, no connection.
etcd-tls: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/etcd-tls

## fleet: a 3-member etcd, two `bulkhead control --etcd` and three `bulkhead serve --etcd`
## hosts on this machine (scripts/fleet): 20 uploads alternating between the control
## processes, each timed until every host serves it (median and max printed); dense
## versions; the hosts' leases. fleet-short (5 uploads) runs in `make test`.
fleet: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/fleet

fleet-short: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/fleet --short

## fleet-rollout: a fleet's rollouts (scripts/fleet-rollout): one etcd, one control and
## three hosts in two groups under load; rules walk every stage host by host, then the
## December replay's runtime is rolled back at h1's free canary and reaches no other
## worker. About 40 s; part of `make test`.
fleet-rollout: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/fleet-rollout

## fleet-scale: 50 host agents (one pool of 1 worker each, 5 groups) on a 3-member etcd
## and one control (scripts/fleet-scale): time until all report, 20 uploads timed until
## every host serves them (p50, p99, max; goal p99 ≤ 1 s), a runtime rollout across them
## stage by stage. About 1.5 GB and 5 minutes on 2 cores; not part of `make test`.
fleet-scale: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/fleet-scale

integration:
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead \
	  $(SWIFT) test -c $(CONFIG) --skip-build --no-parallel --filter IntegrationTests

## chaos: faults injected under load on every pool (scripts/chaos), a table per
## scenario; CHAOS_ARGS=--write also puts the tables into RELIABILITY.md.
chaos: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/chaos $(CHAOS_ARGS)

chaos-short:
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/chaos --short

api-check:
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/api-check

## live-fuzz: scripts/fuzz with its fixed seed and default count (well under 30 s).
live-fuzz:
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/fuzz --ingress

## fuzz: the long fuzz, from a new seed each run (printed; replay with FUZZ_SEED=N):
## both parser fuzzers in a release build of HTTPWire alone (FUZZ_COUNT cases each),
## then FUZZ_LIVE_COUNT connections to a live host's pools and ingress.
FUZZ_COUNT      ?= 2000000
FUZZ_LIVE_COUNT ?= 20000
ifndef FUZZ_SEED
FUZZ_SEED := $(shell date +%s)
endif
fuzz: deps
	BULKHEAD_FUZZ_COUNT=$(FUZZ_COUNT) BULKHEAD_FUZZ_SEED=$(FUZZ_SEED) scripts/fuzz-parser
	$(SWIFT) build -c $(CONFIG) --product bulkhead
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead \
	  scripts/fuzz --ingress --count $(FUZZ_LIVE_COUNT) --seed $(FUZZ_SEED)

## run: the host with the default cohorts and a demo customer per cohort.
run: deps
	$(SWIFT) build -c release --product bulkhead
	$$($(SWIFT) build -c release --show-bin-path)/bulkhead serve --demo

## e2e: what needs a browser or a terminal multiplexer (installs chromium and tmux):
## the status page in headless Chromium, live views redrawing under tmux.
e2e: build
	BULKHEAD_BIN=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/bulkhead scripts/e2e

## bench: bulkhead against nginx + Lua and lighttpd + Lua, then what only bulkhead has
## (release build; installs wrk, nginx, lighttpd and their Lua modules when missing).
## Options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--write"; see scripts/bench --help.
bench: deps
	scripts/bench $(BENCH_ARGS)

clean:
	rm -rf .build
