#!/usr/bin/env bash
# Create (once) a separate venv for one optional-dependency extra of pyproject.toml whose pins clash with
# the main venv's, for the tests that run in it:
#   coqui    torch 2.9.1 + torchaudio + coqui-tts (PyPI's torchaudio only loads beside torch 2.9.1, a ~7 GB
#            CUDA build that runs on CPU; the main venv keeps the light CPU torch 2.13). tests/test_coqui.py
#            runs the project from the checkout with PYTHONPATH, so BASE lists what cascade.tts imports.
#   pipecat  pipecat-ai[openai] pins protobuf 6 / soundfile 0.13, below the main venv's. tests/pipecat_check.py
#            talks to the gateway over HTTP only.
# The project itself is never installed there (a stale path would outlive a fresh clone).
# Cached: rebuilt only when the extra's requirements, BASE or CHECK change (a stamp file named after their hash).
#
# usage: extra_env.sh EXTRA VENV [BASE requirements] [CHECK python code]
set -euo pipefail -f  # -f: requirement specifiers like torchaudio==2.9.* are not globs
EXTRA_NAME="$1"
VENV="$2"
BASE="${3:-}"
CHECK="${4:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
EXTRA="$("$PYTHON" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"][sys.argv[2]]))' "$ROOT/pyproject.toml" "$EXTRA_NAME")"
HASH="$(printf '%s\n%s\n%s\n' "$EXTRA" "$BASE" "$CHECK" | sha1sum | cut -c1-12)"
STAMP="$VENV/.deps-$HASH"
if [ -f "$STAMP" ]; then
  exit 0
fi
echo "creating the $EXTRA_NAME environment in $VENV (once): $EXTRA"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
# shellcheck disable=SC2086 # word splitting of the requirement lists is intended
"${PIP[@]}" $EXTRA
if [ -n "$BASE" ]; then
  # shellcheck disable=SC2086
  "${PIP[@]}" $BASE
fi
"$VENV/bin/python" -m pip uninstall -q -y cascade >/dev/null 2>&1 || true
if [ -n "$CHECK" ]; then
  "$VENV/bin/python" -c "$CHECK"
fi
rm -f "$VENV"/.deps-*
touch "$STAMP"
