# podpath: the two commands that do everything are `make lab` and `make test`.
# Both run as root on Debian or Ubuntu and install what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       := $(VENV)/bin/python
# The venv is made from the system's Python, which every user can run: students run podpath
# from root's checkout (docs/rootless.md), and an interpreter in root's home (a pyenv's) is
# closed to them. A venv made from another Python is made again.
SYSTEM_PYTHON ?= /usr/bin/python3
VENV_ARGS ?=
VENV_FROM_OTHER := $(shell test -e $(VENV)/pyvenv.cfg && \
  ! grep -qx "home = $(patsubst %/,%,$(dir $(SYSTEM_PYTHON)))" $(VENV)/pyvenv.cfg && echo venv-remake)
LAB      ?= podpath
PYTEST_ARGS ?=
# Debian packages the labs, the tests and the static checks use: one home, debian-packages.txt.
APT_PACKAGES := $(shell awk '!/^\#/ && NF {print $$1}' debian-packages.txt)

.PHONY: help deps venv venv-remake pause lab up verify trace down test collection sanity bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

deps: ## install the missing Debian packages (apt)
	@missing=$$(for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || echo $$pkg; done); \
	if [ -n "$$missing" ]; then \
	  echo "podpath: installing with apt: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml $(VENV_FROM_OTHER)
	@test -x $(SYSTEM_PYTHON) || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# compat: the editable install is a path in a .pth file, not setuptools' import hook,
	@# which imports pathlib, re, enum, urllib and more at the start of every Python of the
	@# venv: 2 MiB of memory in each of a lab's daemons (docs/performance.md). setuptools
	@# calls that mode transitional: where it is gone, the default editable install
	$(PY) -m pip install -q -e '.[dev,cluster]' --config-settings editable_mode=compat 2>/dev/null || \
	  $(PY) -m pip install -q -e '.[dev,cluster]'
	@touch $@

venv: $(VENV)/.installed ## create .venv (from $(SYSTEM_PYTHON)) and install podpath with its Python dependencies

venv-remake:
	@echo "podpath: $(VENV) was made from another Python than $(SYSTEM_PYTHON); making it again"
	rm -rf $(VENV)

pause: venv ## build the lab's C programs (podpath-pause, podpath-shim, podpath-ingress, podpath-speaker) and compile podpath's Python
	@$(PY) -m podpath.runtime.pause_build
	@# pip compiles what it installs, not an editable project: compiled once here, the lab's
	@# Python processes do not compile podpath at each start where no bytecode is written
	@# (PYTHONDONTWRITEBYTECODE)
	@$(PY) -m compileall -q podpath library module_utils plugins tests/verify >/dev/null

lab: deps venv pause ## build the default netns lab, verify it and trace one request
	$(VENV)/bin/podpath up --lab $(LAB)
	$(VENV)/bin/podpath verify --lab $(LAB) --junitxml reports/verify-$(LAB).xml
	$(VENV)/bin/podpath trace --lab $(LAB) -o reports/trace-$(LAB).mmd
	@echo "Next: $(VENV)/bin/podpath status --lab $(LAB); docs/walkthrough.md follows the article on this lab;"
	@echo "      $(VENV)/bin/podpath down --lab $(LAB) removes it."

up: deps venv pause ## build (or repair) the netns lab LAB
	$(VENV)/bin/podpath up --lab $(LAB)

verify: venv ## run the verifier against the netns lab LAB
	$(VENV)/bin/podpath verify --lab $(LAB)

down: venv ## remove the netns lab LAB and everything it made
	$(VENV)/bin/podpath down --lab $(LAB)

test: deps venv pause ## the whole test suite, static checks included
	$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

collection: venv ## build the podpath.lab collection from library/ and module_utils/ (build/*.tar.gz)
	$(PY) collection/build.py

sanity: venv ## build the collection and run ansible-test sanity on it (make test runs it too)
	$(PY) collection/build.py --sanity

bench: deps venv pause ## the benchmarks; tables go to docs/performance.md
	$(PY) -m bench

boxes: deps venv ## build the cluster lab's Vagrant boxes from Debian's cloud image (docs/cluster.md, "Boxes")
	$(PY) boxes/build.py $(BOXES_ARGS)

clean: ## remove .venv and build output (labs are removed with `make down`)
	rm -rf $(VENV) build *.egg-info
