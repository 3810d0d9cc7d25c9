#!/usr/bin/env bash
# Create (once) the separate Coqui TTS environment: the `coqui` extra of pyproject.toml
# (torch 2.9.1 + torchaudio 2.9 + torchcodec 0.8 + coqui-tts 0.28) plus what the coqui code path imports.
#
# Why separate: coqui-tts needs torchaudio, and PyPI's torchaudio only loads beside torch 2.9.1
# (a CUDA build, ~7 GB, that runs on CPU); the main venv keeps the light CPU torch 2.13.
# The project itself is not installed there (a stale path would outlive a fresh clone): the
# test runs it from the checkout with PYTHONPATH (tests/test_coqui.py).
# Cached: rebuilt only when this script or the extra changes (stamp file named after their hash).
set -euo pipefail -f  # -f: requirement specifiers like torchaudio==2.9.* are not globs
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${COQUI_VENV:-$HOME/.cache/cascade/venv-coqui}"
EXTRA="$("$PYTHON" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["coqui"]))' "$ROOT/pyproject.toml")"
# The packages cascade.types/config/models/audio/tts and the test import; no ASR/LLM stack.
BASE='pydantic>=2.7,<3 pydantic-settings>=2.3 pyyaml>=6 jinja2>=3.1 typer>=0.12 rich>=13 soundfile>=0.12 av>=12 pytest>=8 pytest-timeout>=2.3'
HASH="$( (cat "$ROOT/tests/coqui_env.sh"; echo "$EXTRA") | sha1sum | cut -c1-12)"
STAMP="$VENV/.deps-$HASH"
if [ -f "$STAMP" ]; then
  exit 0
fi
echo "creating the Coqui TTS environment in $VENV (several GB, once): $EXTRA"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
# shellcheck disable=SC2086 # word splitting of the requirement lists is intended
"${PIP[@]}" $EXTRA
# shellcheck disable=SC2086
"${PIP[@]}" $BASE
"$VENV/bin/python" -m pip uninstall -q -y cascade >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch, torchaudio, TTS; print('coqui env ok: torch', torch.__version__, 'torchaudio', torchaudio.__version__, 'TTS', TTS.__version__)"
rm -f "$VENV"/.deps-*
touch "$STAMP"
