# Two commands set everything up on a fresh Debian machine with Python 3.10+:
#   make demo   installs, builds a small espeak-ng corpus, trains Deep Speech 2, tests and transcribes
#   make test   installs and runs the test suite
# Installs are cached in stamp files: a second run installs nothing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .cache/stamps
DEMO_DATA := data/espeak-en
DEMO_CKPT := runs/demo/checkpoints
DEMO_CORPUS_FLAGS ?= --train_utterances 5000 --dev_utterances 200 --test_utterances 300 -j 2
APT_PACKAGES := espeak-ng sox libsndfile1 bible-kjv fortunes-zh cmake g++ make zlib1g-dev libbz2-dev liblzma-dev \
  libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
# KenLM's lmplz, filter and build_binary, built from the kenlm source package pinned in requirements.txt
KENLM_VERSION := $(shell sed -n 's/^kenlm==//p' requirements.txt)
KENLM_BINS := .cache/kenlm/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test test-all browser-test smoke clean-demo

CTCDECODE_LIB := native_client/ctcdecode/ds_ctcdecoder/libctcdecode.so

install: $(STAMP)/python $(STAMP)/kenlm $(CTCDECODE_LIB) $(STAMP)/reference

$(STAMP)/apt: Makefile
	@mkdir -p $(STAMP)
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then echo "Debian packages already installed"; else \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); fi
	@touch $@

# Headless Chromium for tests/test_browser.py (the server's page, a WAV as the microphone); the test
# drives it over the DevTools protocol and skips where chromium is missing
$(STAMP)/chromium:
	@mkdir -p $(STAMP)
	@if dpkg -s chromium >/dev/null 2>&1; then echo "chromium already installed"; else \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; fi
	@touch $@

$(STAMP)/python: requirements.txt training/pyproject.toml native_client/python/pyproject.toml $(STAMP)/apt
	@mkdir -p $(STAMP)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e training -e native_client/ctcdecode -e native_client/python
	@touch $@

$(STAMP)/kenlm: requirements.txt $(STAMP)/apt | $(STAMP)/python
	@rm -rf .cache/kenlm && mkdir -p .cache/kenlm/src .cache/kenlm/build
	$(PY) -m pip download -q --no-deps --no-binary kenlm -d .cache/kenlm kenlm==$(KENLM_VERSION)
	tar xzf .cache/kenlm/kenlm-$(KENLM_VERSION).tar.gz -C .cache/kenlm/src --strip-components 1
	@echo "Building KenLM's lmplz, filter and build_binary (log: .cache/kenlm/build.log)"
	@(cmake -S .cache/kenlm/src -B .cache/kenlm/build -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 && \
	  cmake --build .cache/kenlm/build -j 2 --target lmplz filter build_binary) >.cache/kenlm/build.log 2>&1 \
	  || (tail -30 .cache/kenlm/build.log; exit 1)
	@mkdir -p $(KENLM_BINS) && cp .cache/kenlm/build/bin/lmplz .cache/kenlm/build/bin/filter .cache/kenlm/build/bin/build_binary $(KENLM_BINS)/
	@touch $@

# The CTC prefix beam search (C++ with KenLM's query code), loaded by ds_ctcdecoder with ctypes
$(CTCDECODE_LIB): native_client/ctcdecode/src/prefix_search.cc native_client/ctcdecode/build.sh $(STAMP)/kenlm
	@echo "Building the CTC decoder: native_client/ctcdecode/build.sh"
	native_client/ctcdecode/build.sh .cache/kenlm/src $@

# Mozilla's and Coqui's native runtimes (versions pinned in util/mozilla_runtime.py), the oracles of
# tests/test_mozilla_runtime.py and bench/decoder_parity.py: PyPI wheels, only their shared libraries
# unpacked into .cache/reference/<name>-<version>/
$(STAMP)/reference: util/mozilla_runtime.py | $(STAMP)/python
	@mkdir -p $(STAMP)
	$(PY) util/mozilla_runtime.py fetch
	@touch $@

test: install $(STAMP)/chromium
	$(PY) -m pytest -q -m "not slow" -n 2 tests

test-all: install $(STAMP)/chromium
	$(PY) -m pytest -q -n 2 tests

browser-test: install $(STAMP)/chromium
	$(PY) -m pytest -q tests/test_browser.py

$(DEMO_DATA)/lm.txt: | install
	$(PY) bin/import_espeak.py $(DEMO_DATA) --language en $(DEMO_CORPUS_FLAGS)

demo: install $(DEMO_DATA)/lm.txt
	bin/run-demo.sh $(DEMO_DATA) $(DEMO_CKPT)

smoke: install
	bin/run-smoke.sh

clean-demo:
	rm -rf $(DEMO_CKPT) runs/demo
