#!/usr/bin/env bash
# Create (once) the separate pipecat environment: the `pipecat` extra of pyproject.toml (pipecat-ai[openai]),
# in which tests/pipecat_check.py runs pipecat's OpenAI services against the gateway (tests/test_pipecat.py).
#
# Why separate: pipecat-ai 1.14 pins protobuf 6.x and soundfile 0.13, below what the main venv holds
# (protobuf 7 with LiveKit's plugin, soundfile 0.14). The project is not installed there: the check
# talks to the gateway over HTTP only.
# Cached: rebuilt only when this script or the extra changes (stamp file named after their hash).
set -euo pipefail -f
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${PIPECAT_VENV:-$HOME/.cache/cascade/venv-pipecat}"
EXTRA="$("$PYTHON" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["pipecat"]))' "$ROOT/pyproject.toml")"
HASH="$( (cat "$ROOT/tests/pipecat_env.sh"; echo "$EXTRA") | sha1sum | cut -c1-12)"
STAMP="$VENV/.deps-$HASH"
if [ -f "$STAMP" ]; then
  exit 0
fi
echo "creating the pipecat environment in $VENV (once): $EXTRA"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
# shellcheck disable=SC2086 # word splitting of the requirement list is intended
"${PIP[@]}" $EXTRA
"$VENV/bin/python" -c "import pipecat, openai, soundfile; from pipecat.services.openai.llm import OpenAILLMService; print('pipecat env ok:', pipecat.__version__, 'openai', openai.__version__)"
rm -f "$VENV"/.deps-*
touch "$STAMP"
