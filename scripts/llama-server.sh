#!/usr/bin/env bash
# Build llama.cpp's `llama-server` once and cache it outside the repository.
#
# Why llama-server (not `llama-cpp-python[server]`): built from the same
# sources it decodes faster and its stream carries `usage` and `timings`,
# which the end-to-end test compares with what sweep stores (see
# design.md, "Measured on these 2-core machines").
#
# The llama.cpp sources come from the pinned llama-cpp-python sdist on PyPI
# (the only registry reachable here). Non-native CPU flags: GGML_NATIVE
# segfaults in the AMX matmul on these Xeons.
#
# Usage:
#   scripts/llama-server.sh          build if absent, print the binary path
#   scripts/llama-server.sh --path   print the cached path; exit 1 if absent
# Env: SWEEP_CACHE (default ~/.cache/sweep), LLAMA_CPP_PYTHON_VERSION,
#      BUILD_JOBS (default 2), TMPDIR (scratch space for the build).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${SWEEP_CACHE:-$HOME/.cache/sweep}"
DEST="$CACHE/llama-server-$VERSION"
BIN="$DEST/bin/llama-server"

if [[ "${1:-}" == "--path" ]]; then
    if [[ -x "$BIN" ]]; then
        echo "$BIN"
        exit 0
    fi
    echo "llama-server $VERSION is not built; run scripts/llama-server.sh" >&2
    exit 1
fi

if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

for tool in cmake pip tar; do
    command -v "$tool" >/dev/null || { echo "llama-server.sh: $tool not found" >&2; exit 2; }
done

mkdir -p "$CACHE"
# One builder at a time; a second caller waits, then finds the binary.
exec 9>"$CACHE/llama-server-$VERSION.lock"
flock 9
if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "llama-server.sh: downloading llama-cpp-python $VERSION sdist" >&2
pip download --quiet --no-deps --no-binary :all: --dest "$WORK" \
    "llama-cpp-python==$VERSION" >&2
SDIST="$WORK/llama_cpp_python-$VERSION.tar.gz"
[[ -f "$SDIST" ]] || { echo "llama-server.sh: $SDIST not downloaded" >&2; exit 2; }
# Only the vendored llama.cpp tree is needed.
tar -xzf "$SDIST" -C "$WORK" "llama_cpp_python-$VERSION/vendor/llama.cpp"
rm -f "$SDIST"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"

echo "llama-server.sh: configuring and building (a few minutes)" >&2
# BUILD_SHARED_LIBS=OFF: the cached binary must not depend on the build tree,
# which is deleted below.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$WORK/build" --target llama-server -j "${BUILD_JOBS:-2}" >&2

mkdir -p "$DEST/bin"
cp "$WORK/build/bin/llama-server" "$DEST/bin/llama-server.tmp"
mv "$DEST/bin/llama-server.tmp" "$BIN"
echo "$VERSION" >"$DEST/VERSION"
echo "$BIN"
