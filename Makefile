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
APT_PACKAGES := espeak-ng sox libsndfile1 bible-kjv fortunes-zh
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test test-all smoke clean-demo

install: $(STAMP)/python

$(STAMP)/apt:
	@mkdir -p $(STAMP)
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then echo "Debian packages already installed"; else \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); fi
	@touch $@

$(STAMP)/python: requirements.txt training/pyproject.toml $(STAMP)/apt
	@mkdir -p $(STAMP)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e training
	@touch $@

test: install
	$(PY) -m pytest -q -m "not slow" -n 2 tests

test-all: install
	$(PY) -m pytest -q -n 2 tests

$(DEMO_DATA)/train.csv: | install
	$(PY) bin/import_espeak.py $(DEMO_DATA) --language en $(DEMO_CORPUS_FLAGS)

demo: install $(DEMO_DATA)/train.csv
	bin/run-demo.sh $(DEMO_DATA) $(DEMO_CKPT)

smoke: install
	bin/run-smoke.sh

clean-demo:
	rm -rf $(DEMO_CKPT) runs/demo
