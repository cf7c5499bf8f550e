# anklume-gen — what a user touches: make sync, make nftables, make ai-switch DOMAIN=...
SHELL := /bin/bash

# This checkout, wherever make is run from (make -f path/to/Makefile works from a project dir).
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
INFRA ?= $(if $(wildcard infra/base.yml),infra,infra.yml)
BASE_DIR ?= .
GEN := node $(ROOT)dist/generator/cli/anklume-gen.cjs
# Debian packages the tests run for real (see README).
DEB_PACKAGES := ansible ansible-lint nftables iproute2 python3-yaml conntrack graphviz strace patch
# User values reach the commands through the environment, quoted by the shell, never re-parsed.
FORMAT ?= md
export INFRA BASE_DIR DOMAIN FORMAT EXTRA_VARS

# make apply: --check with CHECK=1, unprotected orphans deleted with DELETE_ORPHANS=1, any other
# ansible variable with EXTRA_VARS (passed as one -e argument: JSON, or @file).
APPLY_FLAGS = $(if $(CHECK),--check) $(if $(DELETE_ORPHANS),--delete-orphans) $(if $(EXTRA_VARS),-- -e "$$EXTRA_VARS")

.PHONY: help build deps sync sync-dry sync-check sync-clean validate apply nftables audit flows ai-switch ai-status lint test bench

help:
	@echo "make sync | sync-dry | sync-check | sync-clean | validate   (INFRA=$$INFRA BASE_DIR=$$BASE_DIR)"
	@echo "make apply [CHECK=1] [DELETE_ORPHANS=1] [EXTRA_VARS=...]   (after make sync: Incus projects, bridges, instances, ruleset)"
	@echo "make audit   (the live host against the tree and the promise; exit 1 on any finding)"
	@echo "make nftables | flows [FORMAT=svg|png] | ai-switch DOMAIN=<d> [NO_FLUSH=1] [DRY_RUN=1] | ai-status   (INFRA, BASE_DIR as above)"
	@echo "make deps (Debian packages and Incus; as root, or through sudo) | build | lint | test | bench"

$(ROOT)dist/generator/cli/anklume-gen.cjs: $(wildcard $(ROOT)generator/*/*.ts $(ROOT)generator/*/*.cts) $(ROOT)schema/infra.schema.json $(ROOT)tsconfig.json $(ROOT)package.json
	cd $(ROOT) && npm run -s build

build: $(ROOT)dist/generator/cli/anklume-gen.cjs

# As root, or as a user with sudo: .ci/deps runs itself again through sudo when it is not root.
deps:
	$(ROOT).ci/deps $(DEB_PACKAGES)

sync: build
	$(GEN) sync "$$INFRA" --base-dir "$$BASE_DIR"

sync-dry: build
	$(GEN) sync "$$INFRA" --base-dir "$$BASE_DIR" --dry-run

sync-check: build
	$(GEN) sync "$$INFRA" --base-dir "$$BASE_DIR" --check

sync-clean: build
	$(GEN) sync "$$INFRA" --base-dir "$$BASE_DIR" --clean-orphans

validate: build
	$(GEN) validate "$$INFRA"

apply: build
	$(GEN) apply --base-dir "$$BASE_DIR" $(APPLY_FLAGS)

nftables: build
	$(GEN) apply-nftables --base-dir "$$BASE_DIR"

audit: build
	$(GEN) audit --infra "$$INFRA" --base-dir "$$BASE_DIR" $(if $(EXTRA_VARS),-- -e "$$EXTRA_VARS")

flows: build
	$(GEN) flows "$$INFRA" --output "$$BASE_DIR/flows.$$FORMAT"

ai-switch: build
	$(GEN) ai-switch --infra "$$INFRA" --base-dir "$$BASE_DIR" $(if $(DOMAIN),--domain "$$DOMAIN") $(if $(NO_FLUSH),--no-flush) $(if $(DRY_RUN),--dry-run)

ai-status: build
	$(GEN) ai-status --infra "$$INFRA" --base-dir "$$BASE_DIR"

lint: build
	cd $(ROOT) && npx tsc -p tsconfig.test.json
	@command -v ansible-lint >/dev/null || { echo "make lint: ansible-lint is not installed (make deps): the roles and site.yml are NOT linted" >&2; exit 1; }
	cd $(ROOT) && ansible-lint
	cd $(ROOT) && ansible-playbook -i localhost, site.yml --syntax-check

test: lint
	cd $(ROOT) && npm test

bench: build
	cd $(ROOT) && npm run bench
