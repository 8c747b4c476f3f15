#!/usr/bin/env bash
# Install llama-cpp-python's OpenAI-compatible server once, in a virtual environment cached
# outside the repository, for tests/it/real_server.rs: the server whose stream carries no
# `usage` (it ignores `stream_options.include_usage`) and no `timings`, so the openai
# backend must count tokens through its `POST /extras/tokenize`.
#
# The wheel is built from the pinned sdist (the only registry reachable here) with
# non-native CPU flags: GGML_NATIVE segfaults in the AMX matmul on these Xeons (design.md,
# "Measured on these 2-core machines"). The built wheel is kept in the cache too, so a
# rebuilt environment does not compile llama.cpp again.
#
# Usage:
#   scripts/llama-cpp-python.sh          install if absent, print the venv's python
#   scripts/llama-cpp-python.sh --path   print the cached python; exit 1 if absent
# Run the server with:
#   "$(scripts/llama-cpp-python.sh --path)" -m llama_cpp.server \
#       --model models/gemma-3-270m-q4_k_m.gguf --chat_format gemma --n_threads 2 \
#       --host 127.0.0.1 --port PORT
# Env: SWEEP_CACHE (default ~/.cache/sweep), LLAMA_CPP_PYTHON_VERSION, BUILD_JOBS
#      (default 2), PYTHON (default python3), TMPDIR (scratch space for the build).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${SWEEP_CACHE:-$HOME/.cache/sweep}"
VENV="$CACHE/llama-cpp-python-$VERSION"
WHEELS="$CACHE/wheels"
PY="$VENV/bin/python"
STAMP="$VENV/.installed"

if [[ "${1:-}" == "--path" ]]; then
    if [[ -f "$STAMP" && -x "$PY" ]]; then
        echo "$PY"
        exit 0
    fi
    echo "llama-cpp-python $VERSION is not installed; run scripts/llama-cpp-python.sh" >&2
    exit 1
fi

if [[ -f "$STAMP" && -x "$PY" ]]; then
    echo "$PY"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
for tool in cmake "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "llama-cpp-python.sh: $tool not found" >&2; exit 2; }
done

mkdir -p "$CACHE" "$WHEELS"
# One installer at a time; a second caller waits, then finds the environment.
exec 9>"$CACHE/llama-cpp-python-$VERSION.lock"
flock 9
if [[ -f "$STAMP" && -x "$PY" ]]; then
    echo "$PY"
    exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llama-cpp-python-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

shopt -s nullglob
wheels=("$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)
if (( ${#wheels[@]} == 0 )); then
    echo "llama-cpp-python.sh: building the llama-cpp-python $VERSION wheel (several minutes)" >&2
    # Only the shared libraries the Python package loads; no tools, tests or examples.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DLLAVA_BUILD=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="${BUILD_JOBS:-2}" \
        "$PYTHON" -m pip wheel --quiet --no-deps --no-binary llama-cpp-python \
        --wheel-dir "$WORK/wheel" "llama-cpp-python==$VERSION" >&2
    built=("$WORK"/wheel/llama_cpp_python-"$VERSION"-*.whl)
    (( ${#built[@]} == 1 )) || { echo "llama-cpp-python.sh: no wheel built" >&2; exit 2; }
    cp "${built[0]}" "$WHEELS/$(basename "${built[0]}").tmp"
    mv "$WHEELS/$(basename "${built[0]}").tmp" "$WHEELS/$(basename "${built[0]}")"
fi

echo "llama-cpp-python.sh: installing the server into $VENV" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --find-links "$WHEELS" \
    "llama-cpp-python[server]==$VERSION" >&2
"$VENV/bin/python" -c "import llama_cpp.server.app" >&2
touch "$STAMP"
echo "$PY"
