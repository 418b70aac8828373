# bulkhead — everything a fresh machine needs is installed by these targets.
SHELL := /bin/bash
SWIFT      ?= swift
CONFIG     ?= debug
BUILD_LOG  := .build/last-build.log
APT_PACKAGES := liblua5.4-dev pkg-config libsqlite3-dev

.PHONY: all deps build test unit integration chaos chaos-short api-check run bench e2e clean

all: build

## deps: install the system packages the build needs, when missing (Debian, as root).
deps:
	@missing=""; \
	for package in $(APT_PACKAGES); do \
	  dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

## build: build every product; fails on any compiler warning in our own code.
build: deps
	@mkdir -p .build
	$(SWIFT) build -c $(CONFIG) --build-tests 2>&1 | tee $(BUILD_LOG); test $${PIPESTATUS[0]} -eq 0
	@if grep -E "^$(CURDIR)/(Sources|Tests)/.*: warning:" $(BUILD_LOG); then \
	  echo "error: the build has warnings (above)"; exit 1; fi

## test: unit tests in parallel, the integration suites one at a time, the short
## chaos run, then schemathesis against the live API.
test: build unit integration chaos-short api-check

unit:
	$(SWIFT) test -c $(CONFIG) --skip-build --skip IntegrationTests

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
